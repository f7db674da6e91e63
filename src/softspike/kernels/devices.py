"""Which kernel runs a spike op (spike-input linear, bit packing of saved spikes, Poisson) for a tensor.

The neurons' scan has its backend catalog (`softspike.core.backends`); the ops around it choose here,
by the tensors they are given, among three kernels with the same results:

    native   the C++ CPU kernels: CPU tensors, float32, where the library builds
    triton   the Triton kernels (`softspike.kernels.triton`): CUDA tensors of float32, float16 or
             bfloat16 (all of one dtype), where triton imports; installed on first use
    torch    tensor ops (nn.functional.linear, saved tensors kept as they are, the Poisson hash stream
             in tensor ops): any device and dtype

`backend="auto"` takes the first that applies, in that order; a named one that does not apply is a
`BackendError` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from softspike.core.backends import AUTO, BackendError

KERNELS = ("native", "triton", "torch")


def _native(tensors: Sequence[Tensor]) -> str | None:
    from softspike.kernels import native

    if any(t.device.type != "cpu" for t in tensors):
        return f"the CPU kernels take CPU tensors, got {tensors[0].device}"
    if any(t.dtype != torch.float32 for t in tensors):
        return f"the CPU kernels take float32, got {', '.join(sorted({str(t.dtype) for t in tensors}))}"
    return None if native.available() else native.status()[0]


def _triton(tensors: Sequence[Tensor]) -> str | None:
    from softspike.kernels.triton.register import DTYPES, install

    if any(t.device.type != "cuda" for t in tensors):
        return f"the Triton kernels take CUDA tensors, got {tensors[0].device}"
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1 or not dtypes <= set(DTYPES):
        return f"the Triton kernels take one of float32, float16, bfloat16, got {', '.join(sorted(map(str, dtypes)))}"
    return install()


def spike_op_kernel(op: str, tensors: Sequence[Tensor | None], backend: str = AUTO, limit: str | None = None) -> str:
    """"native", "triton" or "torch" for `op` (named in errors) on these tensors (None entries skipped);
    `limit`: why the op's own limits rule both compiled kernels out (e.g. too many outputs), or None."""
    given = [t for t in tensors if t is not None]
    if backend == "torch":
        return backend
    if backend not in (AUTO, *KERNELS):
        raise BackendError(f"softspike::{op}: backend must be one of {', '.join((AUTO, *KERNELS))}, got {backend!r}")
    for name, check in (("native", _native), ("triton", _triton)):
        if backend in (AUTO, name):
            why = limit or check(given)
            if why is None:
                return name
            if backend == name:
                raise BackendError(f"softspike::{op}: backend={name!r} cannot run here: {why}")
    return "torch"
