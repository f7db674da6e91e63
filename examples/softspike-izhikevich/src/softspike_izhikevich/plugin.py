"""The Izhikevich neuron as a softspike plugin: two state variables, its own validated parameters.

Izhikevich (2003), in millivolts and milliseconds:

    dV/dt = 0.04·V² + 5·V + 140 − u + I          V ≥ v_peak: spike, V ← c, u ← u + d
    du/dt = a·(b·V − u)

softspike fires and resets the membrane itself (one rule for every neuron), so the plugin keeps it
in the library's units: v = (V − c) / (v_peak − c), i.e. the neuron's default v_reset = 0 is V = c and
its default v_threshold = 1 is V = v_peak. One time step of `dt` ms (forward Euler, both variables
from the previous step's V), with input current I = gain·X:

    V   = c + v·(v_peak − c)
    H   = v + dt·(0.04·V² + 5·V + 140 − u + gain·X) / (v_peak − c)
    u  ← u + dt·a·(b·V − u)
    then softspike fires on H (S = Θ(H − 1)) and resets v to 0 (V = c), and after the spike u ← u + d·S.

The membrane runs away without a reset to c, so the neuron takes only a hard reset
(`soft_reset_ok = False`): a spec with "v_reset": null is rejected with a clear error.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator
from torch import Tensor

import softspike
from softspike.core import Dynamics, Params, State
from softspike.core.params import validate_params


class IzhikevichParams(Params):
    a: float = Field(0.02, gt=0, le=1)
    """Recovery rate of u (1/ms, in (0, 1])."""
    b: float = Field(0.2, ge=-1, le=1)
    """Sensitivity of u to the membrane V (in [-1, 1])."""
    c: float = Field(-65.0, ge=-100, le=0)
    """Reset potential (mV): where V goes after a spike (the neuron's v_reset = 0)."""
    d: float = Field(8.0, ge=0, le=50)
    """Jump of u at every spike (mV)."""
    v_peak: float = Field(30.0, ge=-50, le=60)
    """Spike cut-off (mV): V reaching it fires (the neuron's v_threshold = 1)."""
    dt: float = Field(0.5, gt=0, le=1)
    """Time step (ms); forward Euler is stable for dt <= 1."""
    gain: float = Field(10.0, gt=0)
    """Input current per unit of X (the previous layer's output)."""

    @model_validator(mode="after")
    def _peak_above_reset(self) -> IzhikevichParams:
        # At least 1 mV: the state is scaled by 1 / (v_peak - c), and a vanishing span makes the
        # dynamics numerically meaningless (hypothesis found v_peak - c = 8e-21 breaking gradcheck).
        if self.v_peak - self.c < 1.0:
            raise ValueError(f"v_peak ({self.v_peak} mV) must be at least 1 mV above the reset c ({self.c} mV)")
        return self


class Izhikevich(Dynamics):
    """Izhikevich neuron (regular spiking by default); state v (scaled) and u (mV). See the module."""

    Params: ClassVar[type[IzhikevichParams]] = IzhikevichParams
    state_names: ClassVar[tuple[str, ...]] = ("u",)
    soft_reset_ok: ClassVar[bool] = False

    def __init__(self, a: float = 0.02, b: float = 0.2, c: float = -65.0, d: float = 8.0, v_peak: float = 30.0,
                 dt: float = 0.5, gain: float = 10.0) -> None:
        super().__init__()
        given = {"a": a, "b": b, "c": c, "d": d, "v_peak": v_peak, "dt": dt, "gain": gain}
        self.configure(validate_params(IzhikevichParams, "Izhikevich", given))

    def configure(self, p: IzhikevichParams) -> None:
        """Set up from validated parameters; the registry calls this directly (validated once)."""
        self.a, self.b, self.c, self.d, self.dt, self.gain = p.a, p.b, p.c, p.d, p.dt, p.gain
        self.span = p.v_peak - p.c

    def initial_state(self, like: Tensor, v_rest: float) -> State:
        # At rest u sits on its nullcline u = b·V.
        return {"u": like.new_full(like.shape, self.b * (self.c + v_rest * self.span))}

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v, u = state["v"], state["u"]
        big_v = self.c + v * self.span
        dv = self.dt * (0.04 * big_v * big_v + 5.0 * big_v + 140.0 - u + self.gain * x)
        h = v + dv / self.span
        return h, {**state, "u": u + self.dt * self.a * (self.b * big_v - u)}

    def after_fire(self, h: Tensor, spike: Tensor, state: State) -> State:
        return {**state, "u": state["u"] + self.d * spike}

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}, c={self.c}, d={self.d}, v_peak={self.c + self.span}, dt={self.dt}"


@softspike.hookimpl
def softspike_register(registry):  # type: ignore[no-untyped-def]
    registry.neurons.add("izhikevich", Izhikevich)
