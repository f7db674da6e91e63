"""Bernoulli (Poisson-rate) spike sampling on the compiled kernels.

`torch.rand` plus a comparison costs ~5 ns per element here; the kernel hashes a counter with a
seed drawn from torch's global generator (so `torch.manual_seed` makes runs repeatable) and
compares a 24-bit uniform, as torch.rand's float32, with x: P(spike) = x on that grid, exactly
0 or 1 out.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from softspike.core.fused import native
from softspike.core.fused.pool import POOL


def bernoulli_steps(x: Tensor, T: int) -> Tensor | None:
    """[T, *x.shape] spikes with P(spike) = x, or None where the kernel does not apply."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.numel() == 0:
        return None
    lib = native.load()
    if lib is None:
        return None
    xc = x.detach().contiguous()
    out = POOL.empty((T, *x.shape))
    s0, s1 = (int(v) for v in torch.randint(0, 2**32, (2,), dtype=torch.int64))
    lib.ss_poisson(
        ctypes.c_void_p(xc.data_ptr()), ctypes.c_void_p(out.data_ptr()), T, xc.numel(), s0, s1,
        torch.get_num_threads(),
    )
    return out
