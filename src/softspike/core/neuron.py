"""Spiking neurons: a dynamics plus fire and reset, run one step at a time or over a sequence.

    H(t) = f(V(t-1), X(t))                      charge (the dynamics)
    S(t) = Θ(H(t) - θ(t))                       fire, Θ(0) = 1, backward σ'(H - θ)
    V(t) = H(t)·(1 - S(t)) + V_reset·S(t)        hard reset (V_reset a number)
    V(t) = H(t) - θ(t)·S(t)                      soft reset (V_reset = None)

Through the reset the gradient follows the surrogate (default), is cut (`detach_reset=True`), or
takes the 2020 straight-through form (`reset_grad="straight_through"`): V has the value of the hard
reset and the gradient of H·(1 - σ) + V_reset·σ, with σ = surrogate.primitive(H - θ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from softspike.core.dynamics import Dynamics, State
from softspike.core.errors import StateError
from softspike.core.surrogate import Surrogate, spike

ResetGrad = Literal["surrogate", "straight_through"]
StepMode = Literal["s", "m"]


@dataclass(frozen=True)
class FireConfig:
    """Everything a neuron adds to its dynamics: threshold, reset and the surrogate."""

    v_threshold: float
    v_reset: float | None
    surrogate: Surrogate
    detach_reset: bool = False
    reset_grad: ResetGrad = "surrogate"

    @property
    def v_rest(self) -> float:
        return 0.0 if self.v_reset is None else self.v_reset


def _reset(h: Tensor, s: Tensor, theta: Tensor | float, v_reset: float | None) -> Tensor:
    if v_reset is None:
        return h - theta * s
    return h * (1.0 - s) + v_reset * s


def fire_reset(h: Tensor, theta: Tensor | float, cfg: FireConfig) -> tuple[Tensor, Tensor]:
    """Fire on H and reset it: returns (S, V)."""
    x = h - theta
    s = spike(x, cfg.surrogate)
    if cfg.detach_reset:
        return s, _reset(h, s.detach(), theta, cfg.v_reset)
    if cfg.reset_grad == "straight_through":
        soft = _reset(h, cfg.surrogate.primitive(x), theta, cfg.v_reset)
        hard = _reset(h, s.detach(), theta, cfg.v_reset)
        return s, soft + (hard - soft).detach()
    return s, _reset(h, s, theta, cfg.v_reset)


def neuron_step(
    dynamics: Dynamics, cfg: FireConfig, x: Tensor, v: Tensor, state: State
) -> tuple[Tensor, Tensor, State]:
    """One time step: (X(t), V(t-1), state) -> (S(t), V(t), state)."""
    h = dynamics.charge(v, x, state, cfg.v_rest)
    theta = dynamics.threshold(cfg.v_threshold, state)
    s, v = fire_reset(h, theta, cfg)
    return s, v, dynamics.update(state, s)


def resting(dynamics: Dynamics, cfg: FireConfig, like: Tensor) -> tuple[Tensor, State]:
    """V and the extra state at rest, shaped like one step of input."""
    return torch.full_like(like, cfg.v_rest), dynamics.initial_state(like)


def multistep_reference(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor) -> Tensor:
    """The reference time loop over [T, B, ...] from rest; every fused kernel must match it."""
    v, state = resting(dynamics, cfg, x_seq[0])
    out = []
    for x in x_seq:
        s, v, state = neuron_step(dynamics, cfg, x, v, state)
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
    membrane in `.v` between calls; call `.reset()` (or `softspike.reset(net)`) between samples.
    Multi-step mode (`step_mode="m"`) takes [T, B, ...] and returns spikes [T, B, ...], starting
    from rest at every call.
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
            from softspike.core.registry import get_registry

            surrogate = get_registry().surrogates.create(surrogate or "sigmoid")
        if not isinstance(surrogate, Surrogate):
            raise TypeError(f"surrogate must be a softspike Surrogate or a name, got {type(surrogate).__name__}")
        v_threshold = float(v_threshold)
        if not torch.isfinite(torch.tensor(v_threshold)):
            raise ValueError(f"v_threshold must be a finite number, got {v_threshold}")
        if v_reset is not None:
            v_reset = float(v_reset)
            if not torch.isfinite(torch.tensor(v_reset)):
                raise ValueError(f"v_reset must be a finite number or None (soft reset), got {v_reset}")
        if reset_grad not in ("surrogate", "straight_through"):
            raise ValueError(f"reset_grad must be 'surrogate' or 'straight_through', got {reset_grad!r}")
        self.dynamics = dynamics
        self.surrogate = surrogate
        self.cfg = FireConfig(v_threshold, v_reset, surrogate, bool(detach_reset), reset_grad)
        self.step_mode = step_mode
        self.backend = backend
        #: The multi-step path the last call took: "native", "torch" or "reference" (see core.fused).
        self.backend_used: str | None = None
        self.v: Tensor | float = self.cfg.v_rest
        self.state: State = {}

    # -- the 2020 attribute names -------------------------------------------------------------
    @property
    def v_threshold(self) -> float:
        return self.cfg.v_threshold

    @property
    def v_reset(self) -> float | None:
        return self.cfg.v_reset

    @property
    def detach_reset(self) -> bool:
        return self.cfg.detach_reset

    @property
    def step_mode(self) -> StepMode:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, mode: StepMode) -> None:
        if mode not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' (single step) or 'm' (multi-step), got {mode!r}")
        self._step_mode = mode

    def extra_repr(self) -> str:
        reset = "soft" if self.cfg.v_reset is None else f"v_reset={self.cfg.v_reset}"
        extra = ", detach_reset=True" if self.cfg.detach_reset else ""
        if self.cfg.reset_grad != "surrogate":
            extra += f", reset_grad={self.cfg.reset_grad!r}"
        return f"v_threshold={self.cfg.v_threshold}, {reset}{extra}, step_mode={self.step_mode!r}"

    # -- state ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to rest: forget the membrane and every extra state variable."""
        self.v = self.cfg.v_rest
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
            v, state = self.v, self.state
            if v.shape != x.shape or v.device != x.device:
                raise StateError(
                    f"{type(self).__name__}: the kept membrane has shape {tuple(v.shape)} on {v.device}, "
                    f"but this input has shape {tuple(x.shape)} on {x.device}. Call reset() on the neuron "
                    "(or softspike.reset(net)) before feeding a new sample or batch."
                )
        else:
            v, state = resting(self.dynamics, self.cfg, x)
        s, self.v, self.state = neuron_step(self.dynamics, self.cfg, x, v, state)
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
            return multistep_reference(self.dynamics, self.cfg, x_seq)
        from softspike.core import fused  # imported here: fused builds on this module

        self.backend_used = fused.select_backend(self.dynamics, self.cfg, x_seq, self.backend)
        return fused.run(self.backend_used, self.dynamics, self.cfg, x_seq)
