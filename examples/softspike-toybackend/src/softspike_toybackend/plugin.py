"""A backend registered through the entry point: float64 layers of any dynamics, by the reference
loop, with a counter that shows it ran. A real backend puts a kernel in `run`."""

from __future__ import annotations

import torch
from torch import Tensor

import softspike
from softspike.core.backends import Backend
from softspike.core.dynamics import Dynamics
from softspike.core.step import FireConfig, multistep_reference

#: How many scans this backend ran (the test reads it).
CALLS = [0]


def supports(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> str | None:
    """None where this backend can run the layer, else why not (shown by `softspike info`)."""
    return None if x.dtype == torch.float64 else "the toy backend takes float64 only"


def run(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> Tensor:
    CALLS[0] += 1
    return multistep_reference(dynamics, cfg, x)


@softspike.hookimpl
def softspike_register(registry):  # type: ignore[no-untyped-def]
    # Priority 500: tried before the built-ins (native 300, torch 200, compiled 100, reference 0).
    registry.backends.add(Backend("toy_float64", 500, supports, run, "float64, any dynamics: the reference loop"))
