"""The neuron step as pure functions: charge, fire and reset, and the reference time loop.

    H(t), state = charge(X(t), state)           the dynamics (V(t-1) is state["v"])
    S(t) = Θ(H(t) - θ(t))                       fire, Θ(0) = 1, backward σ'(H - θ)
    V(t) = H(t)·(1 - S(t)) + V_reset·S(t)        hard reset (V_reset a number)
    V(t) = H(t) - θ(t)·S(t)                      soft reset (V_reset = None)
    state = after_fire(H(t), S(t), state)        the dynamics' own state after the spikes

Through the reset the gradient follows the surrogate (default), is cut (`detach_reset=True`), or
takes the 2020 straight-through form (`reset_grad="straight_through"`): V has the value of the hard
reset and the gradient of H·(1 - σ) + V_reset·σ, with σ = surrogate.primitive(H - θ). All of this is
written here, once, for every dynamics; every backend's scan must match `multistep_reference`.
This module imports no kernel (the backends import it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics, State
from softspike.core.surrogate import Surrogate, spike

ResetGrad = Literal["surrogate", "straight_through"]
StepMode = Literal["s", "m"]
SpikeFn = Callable[[Tensor, Surrogate], Tensor]


@dataclass(frozen=True)
class FireConfig:
    """Everything a neuron adds to its dynamics: threshold, reset and the surrogate.

    Validated here and only here; a neuron keeps one and replaces it when a setting changes.
    """

    v_threshold: float
    v_reset: float | None
    surrogate: Surrogate
    detach_reset: bool = False
    reset_grad: ResetGrad = "surrogate"

    def __post_init__(self) -> None:
        if not isinstance(self.surrogate, Surrogate):
            raise TypeError(
                f"surrogate must be a softspike Surrogate or a registered name, got {type(self.surrogate).__name__}"
            )
        th = float(self.v_threshold)
        if not math.isfinite(th):
            raise ValueError(f"v_threshold must be a finite number, got {self.v_threshold}")
        object.__setattr__(self, "v_threshold", th)
        if self.v_reset is not None:
            vr = float(self.v_reset)
            if not math.isfinite(vr):
                raise ValueError(f"v_reset must be a finite number or None (soft reset), got {self.v_reset}")
            object.__setattr__(self, "v_reset", vr)
        if self.reset_grad not in ("surrogate", "straight_through"):
            raise ValueError(f"reset_grad must be 'surrogate' or 'straight_through', got {self.reset_grad!r}")
        object.__setattr__(self, "detach_reset", bool(self.detach_reset))

    @property
    def v_rest(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset


def _reset(h: Tensor, s: Tensor, theta: Tensor | float, v_reset: float | None) -> Tensor:
    if v_reset is None:
        return h - theta * s
    return h * (1.0 - s) + v_reset * s


def fire_reset(h: Tensor, theta: Tensor | float, cfg: FireConfig, spike_fn: SpikeFn = spike) -> tuple[Tensor, Tensor]:
    """Fire on H and reset it: returns (S, V). `spike_fn` is the spike op (swapped by the compiled path)."""
    x = h - theta
    s = spike_fn(x, cfg.surrogate)
    if cfg.detach_reset:
        return s, _reset(h, s.detach(), theta, cfg.v_reset)
    if cfg.reset_grad == "straight_through":
        soft = _reset(h, cfg.surrogate.primitive(x), theta, cfg.v_reset)
        hard = _reset(h, s.detach(), theta, cfg.v_reset)
        return s, soft + (hard - soft).detach()
    return s, _reset(h, s, theta, cfg.v_reset)


def step_parts(
    dynamics: Dynamics, cfg: FireConfig, x: Tensor, state: State, spike_fn: SpikeFn = spike
) -> tuple[Tensor, Tensor | float, Tensor, State]:
    """One time step, with its intermediates: (H, θ, S, state(t)); the state holds V under "v"."""
    h, new = dynamics.charge(x, state, cfg.v_rest)
    theta = dynamics.threshold(cfg.v_threshold, state)
    s, v = fire_reset(h, theta, cfg, spike_fn)
    new = dict(new)
    new["v"] = v
    new = dict(dynamics.after_fire(h, s, new))
    new["v"] = v  # the library owns V: the reset means the same for every dynamics
    return h, theta, s, new


def neuron_step(
    dynamics: Dynamics, cfg: FireConfig, x: Tensor, state: State, spike_fn: SpikeFn = spike
) -> tuple[Tensor, State]:
    """One time step: (X(t), state(t-1)) -> (S(t), state(t)); the state holds V under "v"."""
    _, _, s, new = step_parts(dynamics, cfg, x, state, spike_fn)
    return s, new


def resting(dynamics: Dynamics, cfg: FireConfig, like: Tensor) -> State:
    """The whole state at rest (V = V_rest and the dynamics' own), shaped like one step of input."""
    state = dict(dynamics.initial_state(like, cfg.v_rest))
    state["v"] = torch.full_like(like, cfg.v_rest)
    return state


def multistep_reference(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor) -> Tensor:
    """The reference time loop over [T, B, ...] from rest; every fused path must match it."""
    state = resting(dynamics, cfg, x_seq[0])
    out = []
    for x in x_seq:
        s, state = neuron_step(dynamics, cfg, x, state)
        out.append(s)
    return torch.stack(out)
