"""Spiking neurons: a dynamics plus fire and reset, run one step at a time or over a sequence.

    H(t), state = charge(X(t), state)           the dynamics (V(t-1) is state["v"])
    S(t) = Θ(H(t) - θ(t))                       fire, Θ(0) = 1, backward σ'(H - θ)
    V(t) = H(t)·(1 - S(t)) + V_reset·S(t)        hard reset (V_reset a number)
    V(t) = H(t) - θ(t)·S(t)                      soft reset (V_reset = None)
    state = after_fire(H(t), S(t), state)        the dynamics' own state after the spikes

Through the reset the gradient follows the surrogate (default), is cut (`detach_reset=True`), or
takes the 2020 straight-through form (`reset_grad="straight_through"`): V has the value of the hard
reset and the gradient of H·(1 - σ) + V_reset·σ, with σ = surrogate.primitive(H - θ). All of this is
applied here, once, for every dynamics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from softspike.core.dynamics import Dynamics, State
from softspike.core.errors import ParameterError, StateError
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


def _check_float(x: object, where: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{where}: expected a floating-point tensor, got dtype {x.dtype}; convert it with x.float()"
        )
    return x


class Neuron(nn.Module):
    """A spiking neuron layer: drop it into `nn.Sequential` like an activation function.

    Single-step mode (`step_mode="s"`, the default) takes one time step per call and keeps the
    membrane in `.v` (and the dynamics' other variables in `.state`) between calls; call `.reset()`
    (or `softspike.reset(net)`) between samples. Multi-step mode (`step_mode="m"`) takes [T, B, ...]
    and returns spikes [T, B, ...], starting from rest at every call.

    Settings live once, in `cfg` (a validated `FireConfig`): assigning `neuron.surrogate = gate`
    swaps the gate every path uses from the next call on.
    """

    def __init__(
        self,
        dynamics: Dynamics,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = False,
        reset_grad: ResetGrad = "surrogate",
        step_mode: StepMode = "s",
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(dynamics, Dynamics):
            raise TypeError(f"dynamics must be a softspike Dynamics, got {type(dynamics).__name__}")
        if isinstance(surrogate, str) or surrogate is None:
            # Only for a neuron built by hand: the registry's own `neurons.create` resolves names
            # in its own catalog and passes a gate.
            from softspike.core.registry import get_registry

            surrogate = get_registry().surrogates.create(surrogate or "sigmoid")
        cfg = FireConfig(v_threshold, v_reset, surrogate, detach_reset, reset_grad)  # type: ignore[arg-type]
        if cfg.v_reset is None and not dynamics.soft_reset_ok:
            raise ParameterError(
                f"{type(dynamics).__name__} needs a hard reset: give v_reset a number (its membrane runs away "
                "under a soft reset)"
            )
        self.dynamics = dynamics
        self._cfg = cfg
        self.surrogate = cfg.surrogate
        self.step_mode = step_mode
        self.backend = backend
        #: The multi-step path the last call took (see `softspike.core.fused`).
        self.backend_used: str | None = None
        self.v: Tensor | float = cfg.v_rest
        self.state: State = {}

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "surrogate" and not isinstance(value, Surrogate):
            raise TypeError(
                f"surrogate must be a softspike Surrogate, got {type(value).__name__}; for a registered gate by "
                "name use softspike.get_registry().surrogates.create(name)"
            )
        super().__setattr__(name, value)
        if name == "surrogate" and "_cfg" in self.__dict__ and self._cfg.surrogate is not value:
            self.__dict__["_cfg"] = replace(self._cfg, surrogate=value)  # validates the new gate

    @property
    def cfg(self) -> FireConfig:
        """The neuron's settings; the one place every path reads them from."""
        return self._cfg

    # -- the 2020 attribute names -------------------------------------------------------------
    @property
    def v_threshold(self) -> float:
        return self._cfg.v_threshold

    @property
    def v_reset(self) -> float | None:
        return self._cfg.v_reset

    @property
    def detach_reset(self) -> bool:
        return self._cfg.detach_reset

    @property
    def step_mode(self) -> StepMode:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, mode: StepMode) -> None:
        if mode not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' (single step) or 'm' (multi-step), got {mode!r}")
        self._step_mode = mode

    def extra_repr(self) -> str:
        cfg = self._cfg
        reset = "soft" if cfg.v_reset is None else f"v_reset={cfg.v_reset}"
        extra = ", detach_reset=True" if cfg.detach_reset else ""
        if cfg.reset_grad != "surrogate":
            extra += f", reset_grad={cfg.reset_grad!r}"
        return f"v_threshold={cfg.v_threshold}, {reset}{extra}, step_mode={self.step_mode!r}"

    # -- state ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to rest: forget the membrane and every extra state variable."""
        self.v = self._cfg.v_rest
        self.state = {}

    def detach(self) -> None:
        """Keep the state's values but cut its history from the graph (truncated BPTT)."""
        if isinstance(self.v, Tensor):
            self.v = self.v.detach()
        self.state = {k: t.detach() for k, t in self.state.items()}

    # -- running ----------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self._step_mode == "s":
            return self.single_step(x)
        return self.multi_step(x)

    def single_step(self, x: Tensor) -> Tensor:
        """One time step; the membrane carries over to the next call until `reset()`."""
        _check_float(x, f"{type(self).__name__}.single_step")
        if isinstance(self.v, Tensor):
            v = self.v
            if v.shape != x.shape or v.device != x.device:
                raise StateError(
                    f"{type(self).__name__}: the kept membrane has shape {tuple(v.shape)} on {v.device}, "
                    f"but this input has shape {tuple(x.shape)} on {x.device}. Call reset() on the neuron "
                    "(or softspike.reset(net)) before feeding a new sample or batch."
                )
            if v.dtype != x.dtype:  # else type promotion would silently turn the kept state into x's dtype
                raise StateError(
                    f"{type(self).__name__}: the kept membrane is {v.dtype} but this input is {x.dtype}; feed "
                    f"every step in one dtype (x.to({v.dtype})), or call reset() to start over in {x.dtype}."
                )
            state = {**self.state, "v": v}
        else:
            state = resting(self.dynamics, self._cfg, x)
        s, state = neuron_step(self.dynamics, self._cfg, x, state)
        self.v = state.pop("v")
        self.state = state
        return s

    def multi_step(self, x_seq: Tensor) -> Tensor:
        """[T, B, ...] in, spikes [T, B, ...] out, from rest (no state kept between calls)."""
        _check_float(x_seq, f"{type(self).__name__}.multi_step")
        if x_seq.dim() < 2:
            raise ValueError(
                f"{type(self).__name__}: multi-step input must be [T, B, ...] (at least 2 dims), "
                f"got shape {tuple(x_seq.shape)}; for one step at a time use step_mode='s'"
            )
        if x_seq.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: multi-step input has T = 0 time steps")
        if self.backend == "reference":
            self.backend_used = "reference"
            return multistep_reference(self.dynamics, self._cfg, x_seq)
        from softspike.core import fused  # imported here: fused builds on this module

        self.backend_used, out = fused.execute(self.dynamics, self._cfg, x_seq, self.backend)
        return out
