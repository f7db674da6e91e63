"""Saved spikes on a GPU, let go without a wait: whether a tensor was binary reaches the host later.

On the CPU, `compact_saved_spikes` packs a saved tensor, reads the kernel's "all 0 or 1" flag and
keeps either the bits or the tensor. On a GPU reading that flag would wait for every queued kernel,
at every saved tensor. Here the flag is copied to pinned host memory without blocking, and the
packed record keeps both the tensor and its bits until the copy has landed (a CUDA event says so):
then it drops the bits (not binary) or the tensor (binary: 32x less memory from then on). Records
are settled, oldest first, whenever another tensor is packed or one is unpacked, so nothing ever
waits; a record whose flag has not landed when backward needs it gives back the tensor itself.
Kernels complete in stream order, so the first record not yet settled stops the sweep.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque

import torch
from torch import Tensor


class DeviceFlag:
    """A bool on the device, copied to pinned host memory without blocking; `value()` is None until it lands."""

    def __init__(self, flag: Tensor) -> None:
        self._host = torch.empty((), dtype=torch.bool, pin_memory=True)
        self._host.copy_(flag, non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record()

    def value(self) -> bool | None:
        return bool(self._host) if self._event.query() else None


_pending: deque[weakref.ref[LatePacked]] = deque()
_lock = threading.Lock()  # backward unpacks on autograd's device thread while the next forward may pack


def settle_pending() -> None:
    """Settle every record whose flag has landed, oldest first (see the module docstring)."""
    with _lock:
        while _pending:
            rec = _pending[0]()
            if rec is not None and not rec.settle():
                return
            _pending.popleft()


class LatePacked:
    """A saved tensor with its bits: the tensor until the device says it was binary, then the bits alone."""

    __slots__ = ("__weakref__", "bits", "dense", "dtype", "flag", "shape")

    def __init__(self, t: Tensor, bits: Tensor, ok: Tensor, flag: DeviceFlag | None = None) -> None:
        from torch._subclasses.fake_tensor import is_fake

        self.dense: Tensor | None = t
        self.bits: Tensor | None = bits
        self.shape, self.dtype = list(t.shape), t.dtype
        # Fake tensors (a GPU-less check of the code) hold no flag to read: the tensor is kept.
        self.flag = flag if flag is not None or is_fake(ok) else DeviceFlag(ok)
        settle_pending()
        if self.flag is not None:
            with _lock:
                _pending.append(weakref.ref(self))

    def settle(self) -> bool:
        """Drop the bits or the tensor once the flag has landed; whether it has."""
        if self.dense is None or self.bits is None:
            return True
        binary = self.flag.value() if self.flag is not None else None
        if binary is None:
            return False
        if binary:
            self.dense = None
        else:
            self.bits = None
        return True

    def unpack(self) -> Tensor:
        from softspike.kernels.bitpack import unpack_bits

        settle_pending()
        self.settle()
        if self.dense is not None:
            return self.dense
        assert self.bits is not None
        out: Tensor = unpack_bits(self.bits, self.shape)
        return out.to(self.dtype)
