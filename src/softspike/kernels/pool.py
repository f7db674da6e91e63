"""A small cache of large CPU output buffers.

On this kind of machine a fresh 50 MB tensor costs ~8x more to allocate and fill than an existing
buffer (every page faults in). The fused kernels take their outputs from here: a buffer is handed
out again only when nothing but the pool refers to its storage, so no caller ever sees its data
change. Outputs are plain tensors (not views) on the buffer's storage.

Thread safety: finding a free buffer and creating the tensor that holds it happen under one lock,
so two threads running networks at once never get the same buffer (the reference the new
tensor takes marks the buffer busy before the lock is released).
"""

from __future__ import annotations

import os
import threading

import torch
from torch import Tensor

_MIN_BYTES = 1 << 17  # glibc's default mmap threshold: smaller blocks come from the heap anyway
_use_count = getattr(torch._C, "_storage_Use_Count", None)


class BufferPool:
    """Reuses free buffers of the exact byte size asked for; keeps at most `max_bytes` cached."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._bufs: list[Tensor] = []
        self._lock = threading.Lock()

    def _free(self, buf: Tensor) -> bool:
        # One reference from the pool's tensor, one from the temporary storage object.
        return _use_count is not None and _use_count(buf.untyped_storage()._cdata) <= 2

    @property
    def cached_bytes(self) -> int:
        return sum(b.numel() for b in list(self._bufs))

    @property
    def free_bytes(self) -> int:
        """Bytes cached but not in use (what an allocator would call reserved, not allocated)."""
        with self._lock:
            return sum(b.numel() for b in self._bufs if self._free(b))

    def empty(self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
        """An uninitialised CPU tensor of `shape`, on a recycled buffer when one is free."""
        numel = 1
        for n in shape:
            numel *= n
        nbytes = numel * dtype.itemsize
        if nbytes < _MIN_BYTES or _use_count is None or self.max_bytes <= 0:
            return torch.empty(shape, dtype=dtype)
        with self._lock:
            return self._take(tuple(shape), dtype, nbytes)

    def _take(self, shape: tuple[int, ...], dtype: torch.dtype, nbytes: int) -> Tensor:
        buf = next((b for b in self._bufs if b.numel() == nbytes and self._free(b)), None)
        if buf is None:
            if nbytes > self.max_bytes:
                return torch.empty(shape, dtype=dtype)
            # Make room: drop free buffers, oldest first.
            while self.cached_bytes + nbytes > self.max_bytes:
                old = next((b for b in self._bufs if self._free(b)), None)
                if old is None:
                    return torch.empty(shape, dtype=dtype)
                self._drop(old)
            buf = torch.empty(nbytes, dtype=torch.uint8)
            self._bufs.append(buf)
        else:  # most recently used last
            self._drop(buf)
            self._bufs.append(buf)
        stride = torch.empty(shape, device="meta").stride()
        return torch.empty(0, dtype=dtype).set_(buf.untyped_storage(), 0, shape, stride)

    def _drop(self, buf: Tensor) -> None:
        self._bufs = [b for b in self._bufs if b is not buf]

    def clear(self) -> None:
        """Forget every cached buffer (buffers still in use stay alive with their users)."""
        with self._lock:
            self._bufs.clear()


POOL = BufferPool(int(float(os.environ.get("SOFTSPIKE_POOL_MB", "1024")) * (1 << 20)))
