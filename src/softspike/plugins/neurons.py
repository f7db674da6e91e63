"""Built-in neuron dynamics: IF, LIF, parametric LIF and adaptive-threshold LIF."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from softspike.core.dynamics import Dynamics, State
from softspike.core.params import Params, validate_params


class IFParams(Params):
    """IF has no parameters of its own."""


class IF(Dynamics):
    """Integrate-and-fire: H = V + X."""

    Params: ClassVar[type[IFParams]] = IFParams

    def charge(self, v: Tensor, x: Tensor, state: State, v_rest: float) -> Tensor:
        return v + x


class LIFParams(Params):
    tau: float = Field(100.0, gt=0)
    """Membrane time constant τ in time steps (> 0); τ = 1 forgets V every step."""


class LIF(Dynamics):
    """Leaky integrate-and-fire: H = V + (X - (V - V_rest)) / τ, from τ dV/dt = -(V - V_rest) + X."""

    Params: ClassVar[type[LIFParams]] = LIFParams

    def __init__(self, tau: float = 100.0) -> None:
        super().__init__()
        self.tau = validate_params(LIFParams, "LIF", {"tau": tau}).tau

    def charge(self, v: Tensor, x: Tensor, state: State, v_rest: float) -> Tensor:
        return v + (x - (v - v_rest)) / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


class ParametricLIFParams(Params):
    init_tau: float = Field(2.0, gt=1)
    """Initial τ (> 1); τ = 1 + e^(-w) is learnt through the parameter w."""


class ParametricLIF(Dynamics):
    """LIF with a learnable time constant: H = V + (X - (V - V_rest))·k, k = 1/τ = sigmoid(w)."""

    Params: ClassVar[type[ParametricLIFParams]] = ParametricLIFParams

    def __init__(self, init_tau: float = 2.0) -> None:
        super().__init__()
        init_tau = validate_params(ParametricLIFParams, "ParametricLIF", {"init_tau": init_tau}).init_tau
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    @property
    def tau(self) -> float:
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def charge(self, v: Tensor, x: Tensor, state: State, v_rest: float) -> Tensor:
        k = torch.sigmoid(self.w)
        return v + (x - (v - v_rest)) * k

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g} (learnable)"


class ALIFParams(Params):
    tau: float = Field(100.0, gt=0)
    """Membrane time constant τ in time steps (> 0)."""
    tau_adapt: float = Field(200.0, gt=0)
    """Time constant of the threshold adaptation (> 0)."""
    beta: float = Field(0.1, ge=0)
    """How much each spike raises the threshold (>= 0)."""


class ALIF(Dynamics):
    """Adaptive LIF: LIF charge, threshold θ = V_th + β·a, with a ← ρ·a + S and ρ = e^(-1/τ_a)."""

    Params: ClassVar[type[ALIFParams]] = ALIFParams
    state_names: ClassVar[tuple[str, ...]] = ("a",)

    def __init__(self, tau: float = 100.0, tau_adapt: float = 200.0, beta: float = 0.1) -> None:
        super().__init__()
        p = validate_params(ALIFParams, "ALIF", {"tau": tau, "tau_adapt": tau_adapt, "beta": beta})
        self.tau, self.tau_adapt, self.beta = p.tau, p.tau_adapt, p.beta
        self.rho = math.exp(-1.0 / p.tau_adapt)

    def charge(self, v: Tensor, x: Tensor, state: State, v_rest: float) -> Tensor:
        return v + (x - (v - v_rest)) / self.tau

    def threshold(self, v_threshold: float, state: State) -> Tensor | float:
        return v_threshold + self.beta * state["a"]

    def update(self, state: State, spike: Tensor) -> State:
        return {"a": self.rho * state["a"] + spike}

    def extra_repr(self) -> str:
        return f"tau={self.tau}, tau_adapt={self.tau_adapt}, beta={self.beta}"
