"""The 2020 neurons (`SpikingFlow.softbp.neuron`): single-step, `pulse_soft=` for the gate, and the
2020 straight-through gradient through the reset by default.

In 2020 the reset was written as V = V_soft + (V_hard - V_soft).detach(): V takes the value of the
hard reset H·(1 - S) + V_reset·S and the gradient of H·(1 - σ) + V_reset·σ, σ = pulse_soft's smooth
step. Here that is `reset_grad="straight_through"`, the default of this namespace, so 2020 scripts
train as they did; pass `reset_grad="surrogate"` for softspike's default.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from softspike.core.dynamics import Dynamics
from softspike.core.neuron import Neuron
from softspike.core.step import ResetGrad, fire_reset, resting, step_parts
from softspike.core.surrogate import Surrogate
from softspike.plugins.neurons import IF, LIF, ParametricLIF
from softspike.softbp import soft_pulse_function


class BaseNode(Neuron):
    """Base of the 2020 neurons. A 2020-style subclass may override `forward(dv)` to charge
    `self.v` and `return self.spiking()`; the built-in ones charge through their dynamics.

    `monitor_state=True` records V (after charging) and S of every step, as numpy arrays, in
    `self.monitor = {'v': [...], 's': [...]}`; `reset()` empties it."""

    def __init__(
        self,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        pulse_soft: Surrogate | None = None,
        monitor_state: bool = False,
        dynamics: Dynamics | None = None,
        reset_grad: ResetGrad = "straight_through",
        **kwargs: Any,
    ) -> None:
        if pulse_soft is not None and not isinstance(pulse_soft, Surrogate):
            raise TypeError(
                f"pulse_soft must be a gate such as softspike.softbp.soft_pulse_function.Sigmoid(), "
                f"got {type(pulse_soft).__name__}"
            )
        super().__init__(
            dynamics if dynamics is not None else IF(), v_threshold=v_threshold, v_reset=v_reset,
            surrogate=pulse_soft if pulse_soft is not None else soft_pulse_function.Sigmoid(),
            reset_grad=reset_grad, **kwargs,
        )
        self.monitor: dict[str, list[Any]] | bool = {"v": [], "s": []} if monitor_state else False

    @property
    def pulse_soft(self) -> Surrogate:
        return self.surrogate

    def set_monitor(self, monitor_state: bool = True) -> None:
        self.monitor = {"v": [], "s": []} if monitor_state else False

    def spiking(self) -> Tensor:
        """Fire on the charged membrane `self.v` and reset it; returns the spikes (2020 API)."""
        if not isinstance(self.v, Tensor):
            raise TypeError(f"{type(self).__name__}.spiking(): charge self.v with a tensor first (self.v += dv)")
        h = self.v
        s, self.v = fire_reset(h, self.cfg.v_threshold, self.cfg)
        if isinstance(self.monitor, dict):
            self.monitor["v"].append(h.detach().cpu().numpy())
            self.monitor["s"].append(s.detach().cpu().numpy())
        return s

    def single_step(self, x: Tensor) -> Tensor:
        if not isinstance(self.monitor, dict) or (isinstance(self.v, Tensor) and self.v.shape != x.shape):
            return super().single_step(x)  # (a mismatched state raises there, with its message)
        # Monitored: the same step as Neuron.single_step, with its intermediates, to record H.
        state = {**self.state, "v": self.v} if isinstance(self.v, Tensor) else resting(self.dynamics, self.cfg, x)
        h, _, s, state = step_parts(self.dynamics, self.cfg, x, state)
        self.v = state.pop("v")
        self.state = state
        self.monitor["v"].append(h.detach().cpu().numpy())
        self.monitor["s"].append(s.detach().cpu().numpy())
        return s

    def reset(self) -> None:
        super().reset()
        if isinstance(self.monitor, dict):
            self.monitor = {"v": [], "s": []}


class IFNode(BaseNode):
    """IF: H = V + X."""

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 pulse_soft: Surrogate | None = None, monitor_state: bool = False, **kwargs: Any) -> None:
        super().__init__(v_threshold, v_reset, pulse_soft, monitor_state, dynamics=IF(), **kwargs)


class LIFNode(BaseNode):
    """LIF: H = V + (X - (V - V_reset)) / τ."""

    def __init__(self, tau: float = 100.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 pulse_soft: Surrogate | None = None, monitor_state: bool = False, **kwargs: Any) -> None:
        super().__init__(v_threshold, v_reset, pulse_soft, monitor_state, dynamics=LIF(tau), **kwargs)

    @property
    def tau(self) -> float:
        return float(self.dynamics.tau)  # type: ignore[arg-type]


class PLIFNode(BaseNode):
    """Parametric LIF: τ learnable, starting at `init_tau`."""

    def __init__(self, init_tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 pulse_soft: Surrogate | None = None, monitor_state: bool = False, **kwargs: Any) -> None:
        super().__init__(v_threshold, v_reset, pulse_soft, monitor_state, dynamics=ParametricLIF(init_tau),
                         **kwargs)


__all__ = ["BaseNode", "IFNode", "LIFNode", "PLIFNode"]
