"""Saved spikes as bits on CUDA, in the CPU kernels' layouts.

    pack_bits:   byte j, bit b = x[8j + b] != 0 (flat, n a multiple of 8), with whether every x is 0 or 1
    pack_rows:   [R, K] -> int64 words [R, ceil(K/64)], word w bit b = x[r, 64w + b] (spike-linear's layout)

"Whether binary" comes back as a bool tensor on the device: nothing is read on the host.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from softspike.core.errors import KernelInputError
from softspike.kernels.common import check_tensor

BLOCK = 256  # bytes (or words) per program


@triton.jit
def _pack_bytes(x_ptr, out_ptr, bad_ptr, nbytes, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    j = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    k = tl.arange(0, 8)
    m = j < nbytes
    x = tl.load(x_ptr + j[:, None] * 8 + k[None, :], mask=m[:, None], other=0.0).to(tl.float32)
    b = tl.sum(tl.where(x != 0.0, 1, 0) << k[None, :], 1)
    tl.store(out_ptr + j, b.to(tl.uint8), mask=m)
    bad = tl.max(tl.where((x != 0.0) & (x != 1.0), 1, 0), 1)
    tl.store(bad_ptr + pid, tl.max(bad, 0).to(tl.int8))


@triton.jit
def _unpack_bytes(b_ptr, out_ptr, nbytes, BLOCK: tl.constexpr):
    j = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    k = tl.arange(0, 8)
    m = j < nbytes
    b = tl.load(b_ptr + j, mask=m, other=0).to(tl.int32)
    v = ((b[:, None] >> k[None, :]) & 1).to(tl.float32)
    tl.store(out_ptr + j[:, None] * 8 + k[None, :], v.to(out_ptr.dtype.element_ty), mask=m[:, None])


@triton.jit
def _pack_words(x_ptr, out_ptr, bad_ptr, R, K, nwords, BLOCK: tl.constexpr):
    # One program: BLOCK words of one row.
    r = tl.program_id(0).to(tl.int64)
    w = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    b = tl.arange(0, 64)
    col = w[:, None] * 64 + b[None, :]
    m = col < K
    x = tl.load(x_ptr + r * K + col, mask=m, other=0.0).to(tl.float32)
    word = tl.sum(tl.where(x != 0.0, 1, 0).to(tl.int64) << b[None, :].to(tl.int64), 1)
    tl.store(out_ptr + r * nwords + w, word, mask=w < nwords)
    bad = tl.max(tl.max(tl.where((x != 0.0) & (x != 1.0), 1, 0), 1), 0)
    tl.store(bad_ptr + r * tl.num_programs(1) + tl.program_id(1), bad.to(tl.int8))


def pack_bits_cuda(x: Tensor, block: int = BLOCK) -> tuple[Tensor, Tensor]:
    """`torch.ops.softspike.pack_bits` on CUDA (x float32, float16 or bfloat16)."""
    check_tensor("pack_bits", "x", x, dtype=x.dtype if x.dtype in (torch.float16, torch.bfloat16) else torch.float32)
    if not x.is_contiguous() or x.numel() % 8:
        raise KernelInputError(
            f"softspike::pack_bits: x must be contiguous with a multiple of 8 elements, got shape {list(x.shape)}"
        )
    nbytes = x.numel() // 8
    out = torch.empty(nbytes, dtype=torch.uint8, device=x.device)
    if nbytes == 0:
        return out, torch.ones((), dtype=torch.bool, device=x.device)
    nprog = triton.cdiv(nbytes, block)
    bad = torch.empty(nprog, dtype=torch.int8, device=x.device)
    _pack_bytes[(nprog,)](x, out, bad, nbytes, BLOCK=block)
    return out, (bad == 0).all()


def unpack_bits_cuda(bits: Tensor, shape: list[int], block: int = BLOCK) -> Tensor:
    """`torch.ops.softspike.unpack_bits` on CUDA: float32 0s and 1s of `shape`."""
    check_tensor("unpack_bits", "bits", bits, dtype=torch.uint8, min_dim=1)
    out = torch.empty(shape, dtype=torch.float32, device=bits.device)
    if out.numel() != 8 * bits.numel():
        raise KernelInputError(f"softspike::unpack_bits: {bits.numel()} bytes cannot fill shape {shape}")
    if out.numel():
        _unpack_bytes[(triton.cdiv(bits.numel(), block),)](bits, out, bits.numel(), BLOCK=block)
    return out


def pack_rows(x2: Tensor, block: int = 4) -> tuple[Tensor, Tensor]:
    """(x2 [R, K]'s rows as int64 words [R, ceil(K/64)], whether x2 is all 0/1) on x2's device."""
    R, K = x2.shape
    nwords = (K + 63) // 64
    out = torch.empty((R, nwords), dtype=torch.int64, device=x2.device)
    if R == 0 or K == 0:
        return out.zero_(), torch.ones((), dtype=torch.bool, device=x2.device)
    ncol = triton.cdiv(nwords, block)
    bad = torch.empty((R, ncol), dtype=torch.int8, device=x2.device)
    _pack_words[(R, ncol)](x2.contiguous(), out, bad, R, K, nwords, BLOCK=block)
    return out, (bad == 0).all()


def unpack_rows(words: Tensor, K: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The [R, K] matrix of 0s and 1s that `pack_rows` packed."""
    shifts = torch.arange(64, dtype=torch.int64, device=words.device)
    bitsel = (words.unsqueeze(-1) >> shifts) & 1
    return bitsel.reshape(words.shape[0], words.shape[1] * 64)[:, :K].to(dtype)
