"""A quadratic integrate-and-fire neuron and a Gaussian surrogate, registered as a plugin."""

from __future__ import annotations

import math

import torch
from pydantic import Field

import softspike
from softspike.core import Dynamics, Params, Surrogate


class QIFParams(Params):
    tau: float = Field(2.0, gt=0)
    """Membrane time constant (> 0)."""
    v_c: float = Field(0.5, description="Critical voltage of the quadratic term.")


class QIF(Dynamics):
    """Quadratic integrate-and-fire: H = V + ((V - V_rest)(V - v_c) + X) / τ."""

    Params = QIFParams

    def __init__(self, tau: float = 2.0, v_c: float = 0.5) -> None:
        super().__init__()
        self.tau, self.v_c = tau, v_c

    def charge(self, x, state, v_rest):  # type: ignore[no-untyped-def]
        v = state["v"]
        return v + ((v - v_rest) * (v - self.v_c) + x) / self.tau, state


class GaussParams(Params):
    sigma: float = Field(0.5, gt=0)
    """Width of the Gaussian derivative (> 0)."""


class Gauss(Surrogate):
    """σ = Gaussian CDF of width `sigma`; σ' its density."""

    Params = GaussParams

    def __init__(self, sigma: float = 0.5) -> None:
        super().__init__()
        self.sigma = sigma

    def primitive(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + torch.erf(x / (self.sigma * math.sqrt(2))))

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * (x / self.sigma) ** 2) / (self.sigma * math.sqrt(2 * math.pi))


@softspike.hookimpl
def softspike_register(registry):  # type: ignore[no-untyped-def]
    registry.neurons.add("qif", QIF)
    registry.surrogates.add("gauss", Gauss)
