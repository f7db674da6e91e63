"""Keep the spikes that autograd saves as bits: 32x less activation memory for binary tensors.

A spiking network's linear and conv layers save their input for the weight gradient, and those
inputs are spikes: float tensors of 0s and 1s. Inside `compact_saved_spikes()`, every saved CPU
float32 tensor of at least `min_bytes` whose values are all 0 or 1 is stored as packed bits and
unpacked when backward needs it; anything else is saved as usual. On CUDA (the Triton kernels) the
bits are made on the device and the tensor is let go once the GPU has said, without a wait, that it
was binary (`softspike.kernels.triton.late`). The check reads each candidate
once (it stops at the first chunk with another value), packing costs about as much as a copy.

    with compact_saved_spikes():
        loss = loss_fn(net(x_seq), y)
    loss.backward()

A packed tensor is a copy, so autograd can no longer detect in-place changes made to the original
between forward and backward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from softspike.core.errors import KernelInputError
from softspike.kernels.common import check_tensor, lib, ptr
from softspike.kernels.pool import POOL


class _Packed:
    __slots__ = ("bits", "shape")

    def __init__(self, bits: Tensor, shape: torch.Size) -> None:
        self.bits, self.shape = bits, shape


@torch.library.custom_op("softspike::pack_bits", mutates_args=(), device_types="cpu")
def pack_bits(x: Tensor) -> tuple[Tensor, Tensor]:
    """(x's values as bits, 8 per byte [numel / 8] uint8; whether all were 0 or 1) for a contiguous
    float32 x whose size is a multiple of 8."""
    check_tensor("pack_bits", "x", x)
    if not x.is_contiguous() or x.numel() % 8:
        raise KernelInputError(
            f"softspike::pack_bits: x must be contiguous with a multiple of 8 elements, got shape {list(x.shape)}"
        )
    bits = torch.empty(x.numel() // 8, dtype=torch.uint8)
    ok = bool(lib().ss_pack_bits(ptr(x), ptr(bits), x.numel(), torch.get_num_threads())) if x.numel() else True
    return bits, torch.tensor(ok)


@pack_bits.register_fake
def _(x: Tensor) -> tuple[Tensor, Tensor]:
    return x.new_empty(x.numel() // 8, dtype=torch.uint8), x.new_empty((), dtype=torch.bool)


@torch.library.custom_op("softspike::unpack_bits", mutates_args=(), device_types="cpu")
def unpack_bits(bits: Tensor, shape: list[int]) -> Tensor:
    """The float32 tensor of `shape` (0s and 1s) that `pack_bits` packed into `bits`."""
    check_tensor("unpack_bits", "bits", bits, dtype=torch.uint8, min_dim=1)
    out = POOL.empty(tuple(shape))
    if out.numel() != 8 * bits.numel():
        raise KernelInputError(f"softspike::unpack_bits: {bits.numel()} bytes cannot fill shape {shape}")
    if out.numel():
        lib().ss_unpack_bits(ptr(bits), ptr(out), out.numel(), torch.get_num_threads())
    return out


@unpack_bits.register_fake
def _(bits: Tensor, shape: list[int]) -> Tensor:
    return bits.new_empty(shape, dtype=torch.float32)


def pack_spikes(t: Tensor, min_bytes: int = 1 << 16, backend: str = "auto") -> Any:
    """`t` as packed bits if it is a binary float tensor the kernels take (softspike.kernels.devices:
    CPU float32, or CUDA through Triton), else `t` itself."""
    if (
        not t.is_floating_point() or t.layout != torch.strided or t.numel() * t.element_size() < min_bytes
        or t.numel() % 8 or not t.is_contiguous()
    ):
        return t
    from softspike.kernels.devices import spike_op_kernel

    kernel = spike_op_kernel("pack_bits", (t,), backend)
    if kernel == "torch":
        return t
    bits, ok = pack_bits(t)
    if kernel == "triton":
        from softspike.kernels.triton.late import LatePacked

        return LatePacked(t, bits, ok)  # whether t was binary is read later, without a wait
    return _Packed(bits, t.shape) if bool(ok) else t


def unpack_spikes(obj: Any) -> Tensor:
    if hasattr(obj, "unpack"):  # a LatePacked
        return obj.unpack()  # type: ignore[no-any-return]
    if not isinstance(obj, _Packed):
        return obj  # type: ignore[no-any-return]
    return unpack_bits(obj.bits, list(obj.shape))  # type: ignore[no-any-return]


@contextmanager
def compact_saved_spikes(min_bytes: int = 1 << 16, backend: str = "auto") -> Iterator[None]:
    """Within this block, autograd saves binary float tensors as bits (see the module docstring)."""
    with torch.autograd.graph.saved_tensors_hooks(lambda t: pack_spikes(t, min_bytes, backend), unpack_spikes):
        yield
