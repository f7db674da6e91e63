"""Keep the spikes that autograd saves as bits: 32x less activation memory for binary tensors.

A spiking network's linear and conv layers save their input for the weight gradient, and those
inputs are spikes: float tensors of 0s and 1s. Inside `compact_saved_spikes()`, every saved CPU
float32 tensor of at least `min_bytes` whose values are all 0 or 1 is stored as packed bits and
unpacked when backward needs it; anything else is saved as usual. The check reads each candidate
once (it stops at the first chunk with another value), packing costs about as much as a copy.

    with compact_saved_spikes():
        loss = loss_fn(net(x_seq), y)
    loss.backward()

A packed tensor is a copy, so autograd can no longer detect in-place changes made to the original
between forward and backward.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from softspike.core.fused import native
from softspike.core.fused.pool import POOL


class _Packed:
    __slots__ = ("bits", "shape")

    def __init__(self, bits: Tensor, shape: torch.Size) -> None:
        self.bits, self.shape = bits, shape


def pack_spikes(t: Tensor, min_bytes: int = 1 << 16) -> Any:
    """`t` as packed bits if it is a binary CPU float32 tensor, else `t` itself."""
    lib = native.load()
    if (
        lib is None or t.device.type != "cpu" or t.dtype != torch.float32 or t.layout != torch.strided
        or t.numel() * 4 < min_bytes or t.numel() % 8 or not t.is_contiguous()
    ):
        return t
    bits = torch.empty(t.numel() // 8, dtype=torch.uint8)
    ok = lib.ss_pack_bits(
        ctypes.c_void_p(t.data_ptr()), ctypes.c_void_p(bits.data_ptr()), t.numel(), torch.get_num_threads()
    )
    return _Packed(bits, t.shape) if ok else t


def unpack_spikes(obj: Any) -> Tensor:
    if not isinstance(obj, _Packed):
        return obj  # type: ignore[no-any-return]
    lib = native.load()
    assert lib is not None
    out = POOL.empty(obj.shape)
    lib.ss_unpack_bits(
        ctypes.c_void_p(obj.bits.data_ptr()), ctypes.c_void_p(out.data_ptr()), out.numel(), torch.get_num_threads()
    )
    return out


@contextmanager
def compact_saved_spikes(min_bytes: int = 1 << 16) -> Iterator[None]:
    """Within this block, autograd saves binary float tensors as bits (see the module docstring)."""
    with torch.autograd.graph.saved_tensors_hooks(lambda t: pack_spikes(t, min_bytes), unpack_spikes):
        yield
