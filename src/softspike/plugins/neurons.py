"""Built-in neuron dynamics: IF, LIF, parametric LIF, adaptive-threshold LIF, current-based LIF.

Each validates its parameters once (`configure` receives the validated pydantic object, whether it
came from keyword arguments or from the registry) and declares what the fused kernels can run
(`linear_charge`), exactly as a third-party dynamics would.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from softspike.core.dynamics import Adaptation, Dynamics, LinearCharge, State
from softspike.core.params import MIN_TAU, Params, validate_params
from softspike.core.params import Params as ParamsBase


class _Configured(Dynamics):
    """Built-ins: `__init__` validates keyword arguments; `configure` is the one place that reads them
    (`Dynamics.from_params` calls it directly with the registry's validated object)."""

    Params: ClassVar[type[ParamsBase]]

    def __init__(self, **kwargs: float) -> None:
        super().__init__()
        self.configure(validate_params(self.Params, type(self).__name__, kwargs))

    def configure(self, params: ParamsBase) -> None:
        """Set the dynamics up from its validated parameters (the one place that reads them)."""
        self.params = params


class IFParams(Params):
    """IF has no parameters of its own."""


class IF(_Configured):
    """Integrate-and-fire: H = V + X."""

    Params: ClassVar[type[IFParams]] = IFParams

    def __init__(self) -> None:
        super().__init__()

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        return state["v"] + x, state

    def linear_charge(self) -> LinearCharge:
        return LinearCharge()


class LIFParams(Params):
    tau: float = Field(100.0, ge=MIN_TAU)
    """Membrane time constant τ in time steps (>= 0.5); τ = 1 forgets V every step, τ in [0.5, 1)
    overshoots V_rest (V alternates in sign), and below 0.5, |1 - 1/τ| > 1: each step amplifies V,
    which runs to inf under a soft reset, and gradients become NaN."""


class LIF(_Configured):
    """Leaky integrate-and-fire: H = V + (X - (V - V_rest)) / τ, from τ dV/dt = -(V - V_rest) + X."""

    Params: ClassVar[type[LIFParams]] = LIFParams
    tau: float

    def __init__(self, tau: float = 100.0) -> None:
        super().__init__(tau=tau)

    def configure(self, params: ParamsBase) -> None:
        assert isinstance(params, LIFParams)
        super().configure(params)
        self.tau = params.tau

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v = state["v"]
        return v + (x - (v - v_rest)) / self.tau, state

    def linear_charge(self) -> LinearCharge:
        return LinearCharge(tau=self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


class ParametricLIFParams(Params):
    init_tau: float = Field(2.0, gt=1)
    """Initial τ (> 1); τ = 1 + e^(-w) is learnt through the parameter w."""


class ParametricLIF(_Configured):
    """LIF with a learnable time constant: H = V + (X - (V - V_rest))·k, k = 1/τ = sigmoid(w)."""

    Params: ClassVar[type[ParametricLIFParams]] = ParametricLIFParams

    def __init__(self, init_tau: float = 2.0) -> None:
        super().__init__(init_tau=init_tau)

    def configure(self, params: ParamsBase) -> None:
        assert isinstance(params, ParametricLIFParams)
        super().configure(params)
        self.w = nn.Parameter(torch.tensor(-math.log(params.init_tau - 1.0)))

    @property
    def tau(self) -> float:
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v = state["v"]
        return v + (x - (v - v_rest)) * torch.sigmoid(self.w), state

    def linear_charge(self) -> LinearCharge:
        return LinearCharge(k_logit=self.w)

    def extra_repr(self) -> str:
        return f"tau={self.tau:.4g} (learnable)"


class ALIFParams(Params):
    tau: float = Field(100.0, ge=MIN_TAU)
    """Membrane time constant τ in time steps (>= 0.5: below it, |1 - 1/τ| > 1,
    each step amplifies V, which runs to inf under a soft reset, and gradients become NaN)."""
    tau_adapt: float = Field(200.0, gt=0)
    """Time constant of the threshold adaptation (> 0)."""
    beta: float = Field(0.1, ge=0)
    """How much each spike raises the threshold (>= 0)."""


class ALIF(_Configured):
    """Adaptive LIF: LIF charge, threshold θ = V_th + β·a, with a ← ρ·a + S and ρ = e^(-1/τ_a)."""

    Params: ClassVar[type[ALIFParams]] = ALIFParams
    state_names: ClassVar[tuple[str, ...]] = ("a",)

    def __init__(self, tau: float = 100.0, tau_adapt: float = 200.0, beta: float = 0.1) -> None:
        super().__init__(tau=tau, tau_adapt=tau_adapt, beta=beta)

    def configure(self, params: ParamsBase) -> None:
        assert isinstance(params, ALIFParams)
        super().configure(params)
        self.tau, self.tau_adapt, self.beta = params.tau, params.tau_adapt, params.beta
        self.rho = math.exp(-1.0 / params.tau_adapt)

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v = state["v"]
        return v + (x - (v - v_rest)) / self.tau, state

    def threshold(self, v_threshold: float, state: State) -> Tensor | float:
        return v_threshold + self.beta * state["a"]

    def after_fire(self, h: Tensor, spike: Tensor, state: State) -> State:
        return {**state, "a": self.rho * state["a"] + spike}

    def linear_charge(self) -> LinearCharge:
        return LinearCharge(tau=self.tau, adaptation=Adaptation(self.beta, self.rho))

    def extra_repr(self) -> str:
        return f"tau={self.tau}, tau_adapt={self.tau_adapt}, beta={self.beta}"


class CubaLIFParams(Params):
    tau_mem: float = Field(10.0, ge=MIN_TAU)
    """Membrane time constant τ_mem in time steps (>= 0.5: below it, |1 - 1/τ| > 1,
    each step amplifies V, which runs to inf under a soft reset, and gradients become NaN)."""
    tau_syn: float = Field(5.0, ge=MIN_TAU)
    """Synaptic-current time constant τ_syn in time steps (>= 0.5: below it, |1 - 1/τ_syn| > 1 and
    the current i grows every step without bound)."""


class CubaLIF(_Configured):
    """Current-based LIF: the input charges a synaptic current i, the current charges the membrane.

    With Norse's discretisation (its `lif_feed_forward_step`, so that NIR's CubaLIF maps onto Norse's
    and back), per step::

        j = i + X                               the input jumps the current first
        H = V + (V_rest - V + j) / τ_mem        the membrane integrates this step's current
        fire on H and reset V as every neuron does
        i ← j - j / τ_syn                       the current decays for the next step

    from τ_mem dV/dt = V_rest - V + i and τ_syn di/dt = -i, with X the jump of i per step.
    """

    Params: ClassVar[type[CubaLIFParams]] = CubaLIFParams
    state_names: ClassVar[tuple[str, ...]] = ("i",)

    def __init__(self, tau_mem: float = 10.0, tau_syn: float = 5.0) -> None:
        super().__init__(tau_mem=tau_mem, tau_syn=tau_syn)

    def configure(self, params: ParamsBase) -> None:
        assert isinstance(params, CubaLIFParams)
        super().configure(params)
        self.tau_mem, self.tau_syn = params.tau_mem, params.tau_syn

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v, j = state["v"], state["i"] + x
        h = v + (v_rest - v + j) / self.tau_mem
        return h, {**state, "i": j - j / self.tau_syn}

    def extra_repr(self) -> str:
        return f"tau_mem={self.tau_mem}, tau_syn={self.tau_syn}"
