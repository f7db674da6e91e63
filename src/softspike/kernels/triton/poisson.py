"""Bernoulli (Poisson-rate) spikes on CUDA with the CPU kernel's counter-hash stream, bit for bit.

Element i of step t spikes when u(t, i) < x[i] (x compared in float32), with

    (lo, hi) = the low and high 32 bits of t·M;  h = fmix32((lo + i) ^ s0);  h = fmix32(h ^ fmix32(hi ^ s1))
    u = (h >> 8)·2⁻²⁴

exactly as `softspike.kernels.sampling` documents it, so the same seed gives the same spikes on
every device. The stream seeds, derived on the device from the call's seed (`stream_seeds`), are read
by the kernel from that tensor (no host read).
"""

from __future__ import annotations

import triton
import triton.language as tl
from torch import Tensor

from softspike.kernels.sampling import _check, device_output, stream_seeds

BLOCK = 1024


@triton.jit
def _fmix32(h):
    h ^= h >> 16
    h *= 0x85EBCA6B
    h ^= h >> 13
    h *= 0xC2B2AE35
    h ^= h >> 16
    return h


@triton.jit
def _poisson(x_ptr, out_ptr, seed_ptr, M, BLOCK: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    s0 = (tl.load(seed_ptr) & 0xFFFFFFFF).to(tl.uint32)
    s1 = (tl.load(seed_ptr + 1) & 0xFFFFFFFF).to(tl.uint32)
    base = t * M
    hi = _fmix32((base >> 32).to(tl.uint32) ^ s1)
    lo = (base & 0xFFFFFFFF).to(tl.uint32)
    h = _fmix32((lo + offs.to(tl.uint32)) ^ s0)
    h = _fmix32(h ^ hi)
    u = (h >> 8).to(tl.float32) * 5.9604644775390625e-8
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + base + offs, tl.where(u < x, 1.0, 0.0).to(out_ptr.dtype.element_ty), mask=mask)


def poisson_cuda(x: Tensor, T: int, seed: Tensor, block: int = BLOCK) -> Tensor:
    """`torch.ops.softspike.poisson` on CUDA: spikes [T, *x.shape] in x's dtype and memory layout."""
    _check(x, T, seed)
    out, physical, xp = device_output(x, T)
    M = x.numel()
    if M == 0:
        return out
    grid = (T, triton.cdiv(M, block))
    _poisson[grid](xp, physical, stream_seeds(seed.to(x.device)), M, BLOCK=block)
    return out
