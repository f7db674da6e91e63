"""Neuron modules with the 2020 softbp names: `IFNode`, `LIFNode`, and the newer ones.

Each is single-step by default (one call, one time step; membrane kept in `.v` until `.reset()`);
pass `step_mode="m"` for [T, B, ...] sequences.
"""

from __future__ import annotations

from typing import Any

from softspike.core.neuron import Neuron
from softspike.plugins.neurons import ALIF, IF, LIF, ParametricLIF


class IFNode(Neuron):
    """Integrate-and-fire neuron: H = V + X."""

    def __init__(self, v_threshold: float = 1.0, v_reset: float | None = 0.0, **kwargs: Any) -> None:
        super().__init__(IF(), v_threshold=v_threshold, v_reset=v_reset, **kwargs)


class LIFNode(Neuron):
    """Leaky integrate-and-fire neuron: H = V + (X - (V - V_reset)) / τ."""

    def __init__(
        self, tau: float = 100.0, v_threshold: float = 1.0, v_reset: float | None = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(LIF(tau), v_threshold=v_threshold, v_reset=v_reset, **kwargs)

    @property
    def tau(self) -> float:
        return float(self.dynamics.tau)  # type: ignore[arg-type]


class ParametricLIFNode(Neuron):
    """LIF with a learnable time constant τ (initialised to `init_tau`)."""

    def __init__(
        self, init_tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0, **kwargs: Any
    ) -> None:
        super().__init__(ParametricLIF(init_tau), v_threshold=v_threshold, v_reset=v_reset, **kwargs)


class ALIFNode(Neuron):
    """Adaptive LIF: every spike raises the threshold by β, decaying with τ_adapt."""

    def __init__(
        self,
        tau: float = 100.0,
        tau_adapt: float = 200.0,
        beta: float = 0.1,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(ALIF(tau, tau_adapt, beta), v_threshold=v_threshold, v_reset=v_reset, **kwargs)


__all__ = ["ALIFNode", "IFNode", "LIFNode", "Neuron", "ParametricLIFNode"]
