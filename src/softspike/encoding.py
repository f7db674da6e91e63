"""Encoders: `encoding.PoissonEncoder()` and friends; subclass `Encoder` for your own."""

from softspike.core.encoder import Encoder
from softspike.plugins.encoders import ConstantEncoder, DeltaEncoder, LatencyEncoder, PoissonEncoder

__all__ = ["ConstantEncoder", "DeltaEncoder", "Encoder", "LatencyEncoder", "PoissonEncoder"]
