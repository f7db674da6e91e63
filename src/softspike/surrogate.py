"""Surrogate gates: `surrogate.Sigmoid(alpha=4.0)` and friends; subclass `Surrogate` for your own."""

from softspike.core.surrogate import Surrogate, spike
from softspike.plugins.surrogates import (
    ATan,
    Erf,
    FastSigmoid,
    PiecewiseQuadratic,
    Sigmoid,
    StraightThrough,
    Triangle,
)

__all__ = [
    "ATan", "Erf", "FastSigmoid", "PiecewiseQuadratic", "Sigmoid", "StraightThrough", "Surrogate", "Triangle", "spike",
]
