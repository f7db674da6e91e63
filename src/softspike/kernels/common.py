"""What every native op shares: the loaded library, the argument checks, the memory-order helpers.

Each op family's module (`scan_native`, `spike_linear`, `spike_conv`, `sampling`, `bitpack`) declares
its `torch.ops.softspike` operators and calls the library through these, so every op checks device,
dtype and shape the same way, once, in the op.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from softspike.core.errors import KernelInputError
from softspike.kernels import native
from softspike.kernels.pool import POOL


def lib() -> Any:
    """The loaded kernel library; an op implementation runs only where it exists."""
    handle = native.load()
    if handle is None:
        raise KernelInputError(f"softspike kernels: the compiled library is not available ({native.status()[0]})")
    return handle


def ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


#: Devices other than the CPU whose kernels some package registered for these ops, with the float
#: dtypes they take where the CPU kernels take float32 (softspike.kernels.triton adds "cuda").
OTHER_DEVICES: dict[str, tuple[torch.dtype, ...]] = {}


def check_tensor(op: str, name: str, t: Tensor, dtype: torch.dtype = torch.float32, min_dim: int = 0) -> None:
    """The checks every op makes on a tensor argument, with an error that names the op and the fix."""
    if not isinstance(t, Tensor):
        raise KernelInputError(f"softspike::{op}: {name} must be a tensor, got {type(t).__name__}")
    other = OTHER_DEVICES.get(t.device.type)
    if t.device.type != "cpu" and other is None:
        raise KernelInputError(
            f"softspike::{op}: {name} is on {t.device}; the compiled kernels run on CPU "
            "(other devices take the tensor-op path: backend='torch')"
        )
    if t.dtype != dtype and not (other and dtype == torch.float32 and t.dtype in other):
        raise KernelInputError(f"softspike::{op}: {name} has dtype {t.dtype}, expected {dtype}")
    if t.dim() < min_dim:
        raise KernelInputError(f"softspike::{op}: {name} needs at least {min_dim} dims, got shape {list(t.shape)}")


def check_number(op: str, name: str, value: float, positive: bool = False) -> None:
    if not math.isfinite(value) or (positive and value <= 0):
        need = "a finite number > 0" if positive else "a finite number"
        raise KernelInputError(f"softspike::{op}: {name} must be {need}, got {value!r}")


def memory_order(x: Tensor, lead: int = 0) -> list[int]:
    """A permutation p with x.permute(p) contiguous, dims [0, lead) kept first; identity if none.

    The kernels then read x in place and write outputs with x's own strides (channels_last in,
    channels_last out) instead of copying to row-major and back.
    """
    dims = list(range(x.dim()))
    if x.is_contiguous():
        return dims
    rest = sorted(dims[lead:], key=lambda d: -x.stride()[d])
    perm = dims[:lead] + rest
    return perm if x.permute(perm).is_contiguous() else dims


def inverse(perm: Sequence[int]) -> list[int]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return inv


def pooled_like(shape: Sequence[int], perm: Sequence[int], dtype: torch.dtype = torch.float32) -> Tensor:
    """An uninitialised tensor of `shape` laid out in memory in the order `perm` (a pooled buffer)."""
    physical = POOL.empty(tuple(shape[p] for p in perm), dtype)
    return physical.permute(inverse(perm))
