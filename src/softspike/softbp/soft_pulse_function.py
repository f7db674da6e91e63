"""The 2020 gates (`SpikingFlow.softbp.soft_pulse_function`): Θ forward, a smooth σ' backward.

`Sigmoid(alpha)` is σ(x) = 1 / (1 + e^(-αx)) with the 2020 default α = 1 (softspike's own
`surrogate.Sigmoid` defaults to α = 4); `ATan(alpha)` is σ(x) = arctan(π/2·αx)/π + 1/2, α = 2.
Calling a gate on x = V - V_th returns spikes whose gradient is σ'(x), as the 2020 ones did.
"""

from __future__ import annotations

from softspike.core.surrogate import Surrogate
from softspike.plugins import surrogates


class Sigmoid(surrogates.Sigmoid):
    """σ(x) = 1 / (1 + e^(-αx)), σ'(x) = α·σ(x)·(1 - σ(x)); 2020 default α = 1."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)


class ATan(surrogates.ATan):
    """σ(x) = arctan(π/2·αx)/π + 1/2, σ'(x) = (α/2) / (1 + (π/2·αx)²); default α = 2."""

    def __init__(self, alpha: float = 2.0) -> None:
        super().__init__(alpha)


__all__ = ["ATan", "Sigmoid", "Surrogate"]
