"""Fused kernels: the multi-step scans the built-in backends run, and the spike-input ops around them.

Which scan runs for a neuron is the backend catalog's choice (`softspike.core.backends`, filled by
`softspike.plugins.backends`); this package holds the kernels themselves.
"""

from __future__ import annotations

from softspike.core.fused.compact import compact_saved_spikes
from softspike.core.fused.linear import SpikeLinear, spike_linear
from softspike.core.fused.pool import POOL

__all__ = ["POOL", "SpikeLinear", "compact_saved_spikes", "spike_linear"]
