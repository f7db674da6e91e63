"""Max pooling that saves one byte per output for backward: `torch.ops.softspike.max_pool2d`.

nn.MaxPool2d keeps an int64 index per output (8 bytes) for backward. This op keeps the position of
each window's maximum within the window as a uint8, and routes dL/dY back through it. The maximum
and its position follow PyTorch's rule (first largest value in row-major window order; NaN wins),
so outputs and gradients are bit for bit nn.MaxPool2d's, for any input. On spikes the maximum is
the OR of the window and the position is the first one that fired. Windows without padding or
dilation, kernels up to 15x15; other pools take nn.MaxPool2d. Output keeps x's memory format
(contiguous or channels-last).
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor, nn

from softspike.core.errors import KernelInputError
from softspike.kernels import native
from softspike.kernels.common import check_tensor, lib, ptr

_p, _i32 = ctypes.c_void_p, ctypes.c_int
_SIGNATURES = {
    "ss_max_pool_forward": [_p, _p, _p, _p, _p, _p, _i32],
    "ss_max_pool_backward": [_p, _p, _p, _p, _p, _p, _p, _i32],
}


def _kernel(name: str) -> Any:
    fn = getattr(lib(), name)
    if fn.argtypes is None:
        fn.argtypes, fn.restype = _SIGNATURES[name], None
    return fn


def _geometry(op: str, shape: list[int], kernel: list[int], stride: list[int]) -> list[int]:
    """[N, C, H, W, OH, OW, kh, kw, sh, sw] after the checks."""
    if len(shape) != 4 or len(kernel) != 2 or len(stride) != 2:
        raise KernelInputError(f"softspike::{op}: x must be [N, C, H, W] and kernel, stride two numbers each")
    N, C, H, W = shape
    kh, kw = kernel
    sh, sw = stride
    if not (1 <= kh <= 15 and 1 <= kw <= 15) or min(sh, sw) < 1:
        raise KernelInputError(f"softspike::{op}: kernel sides must be in [1, 15] and strides >= 1, got {kernel}, "
                               f"{stride}")
    if H < kh or W < kw:
        raise KernelInputError(f"softspike::{op}: kernel {kernel} exceeds the input {H}x{W}")
    return [N, C, H, W, (H - kh) // sh + 1, (W - kw) // sw + 1, kh, kw, sh, sw]


def _dense(x: Tensor) -> Tensor:
    """x itself when channels-last, else contiguous (a copy only for other layouts)."""
    return x if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else x.contiguous()


def _channels_last(x: Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _out(geom: list[int], cl: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    shape = (geom[0], geom[1], geom[4], geom[5])
    return torch.empty_permuted(shape, (0, 2, 3, 1) if cl else (0, 1, 2, 3), dtype=dtype, device=device)


def _strides(t: Tensor) -> Tensor:
    return torch.tensor(t.stride(), dtype=torch.int64)


@torch.library.custom_op("softspike::max_pool2d", mutates_args=(), device_types="cpu")
def max_pool2d(x: Tensor, kernel: list[int], stride: list[int]) -> tuple[Tensor, Tensor]:
    """(Y [N, C, OH, OW], the window position of each maximum as uint8, same layout as Y)."""
    check_tensor("max_pool2d", "x", x)
    geom = _geometry("max_pool2d", list(x.shape), kernel, stride)
    xd = _dense(x)
    cl = _channels_last(xd)
    y, idx = _out(geom, cl, torch.float32, x.device), _out(geom, cl, torch.uint8, x.device)
    if y.numel():
        g = torch.tensor(geom, dtype=torch.int64)
        xs, ys = _strides(xd), _strides(y)
        _kernel("ss_max_pool_forward")(ptr(xd), ptr(y), ptr(idx), ptr(g), ptr(xs), ptr(ys), torch.get_num_threads())
    return y, idx


@max_pool2d.register_fake
def _(x: Tensor, kernel: list[int], stride: list[int]) -> tuple[Tensor, Tensor]:
    geom = _geometry("max_pool2d", list(x.shape), kernel, stride)
    cl = _channels_last(x)
    return _out(geom, cl, x.dtype, x.device), _out(geom, cl, torch.uint8, x.device)


@torch.library.custom_op("softspike::max_pool2d_backward", mutates_args=(), device_types="cpu")
def max_pool2d_backward(gy: Tensor, idx: Tensor, x_shape: list[int], channels_last: bool, kernel: list[int],
                        stride: list[int]) -> Tensor:
    """dL/dX [N, C, H, W] (channels-last in memory if `channels_last`) of `max_pool2d` for dL/dY = gy."""
    op = "max_pool2d_backward"
    check_tensor(op, "gy", gy)
    check_tensor(op, "idx", idx, dtype=torch.uint8)
    geom = _geometry(op, x_shape, kernel, stride)
    want = [geom[0], geom[1], geom[4], geom[5]]
    if list(gy.shape) != want or list(idx.shape) != want:
        raise KernelInputError(f"softspike::{op}: gy {list(gy.shape)} and idx {list(idx.shape)} must be {want}")
    gx = _out([*geom[:4], geom[2], geom[3]], channels_last, torch.float32, gy.device)
    if gx.numel():
        g = torch.tensor(geom, dtype=torch.int64)
        xs, ys, gs = _strides(gx), _strides(idx), _strides(gy)  # named: the kernel reads them after ptr() returns
        _kernel("ss_max_pool_backward")(ptr(gy), ptr(idx), ptr(gx), ptr(g), ptr(xs), ptr(ys), ptr(gs),
                                        torch.get_num_threads())
    return gx


@max_pool2d_backward.register_fake
def _(gy: Tensor, idx: Tensor, x_shape: list[int], channels_last: bool, kernel: list[int], stride: list[int]
      ) -> Tensor:
    geom = _geometry("max_pool2d_backward", x_shape, kernel, stride)
    return _out([*geom[:4], geom[2], geom[3]], channels_last, gy.dtype, gy.device)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    x, kernel, stride = inputs
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])
    ctx.conf = (list(x.shape), _channels_last(_dense(x)), list(kernel), list(stride))  # not x's values


def _backward(ctx: Any, gy: Tensor, *_: Any) -> tuple[Tensor | None, ...]:
    (idx,) = ctx.saved_tensors
    with torch.no_grad():
        gx = max_pool2d_backward(gy, idx, *ctx.conf)
    return gx, None, None


max_pool2d.register_autograd(_backward, setup_context=_setup)


class _MaxPool2d(torch.autograd.Function):
    """The op with its gradient in the `setup_context` style, which torch.func accepts (see ops.py)."""

    @staticmethod
    def forward(x: Tensor, kernel: list[int], stride: list[int]) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        return max_pool2d(x, kernel, stride)  # type: ignore[no-any-return]

    setup_context = staticmethod(_setup)  # type: ignore[assignment]
    backward = staticmethod(_backward)  # type: ignore[assignment]


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(u) for u in v]


class SpikeMaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d with one byte per output kept for backward (same results, bit for bit), where
    the op applies: CPU float32 [N, C, H, W], no padding, dilation 1, no ceil_mode or returned indices."""

    def forward(self, x: Tensor) -> Tensor:
        kernel, stride = _pair(self.kernel_size), _pair(self.stride if self.stride is not None else self.kernel_size)
        if (
            x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4 or _pair(self.padding) != [0, 0]
            or _pair(self.dilation) != [1, 1] or self.ceil_mode or self.return_indices or max(kernel) > 15
            or x.shape[2] < kernel[0] or x.shape[3] < kernel[1] or not native.available()
        ):
            return super().forward(x)
        out: Tensor = _MaxPool2d.apply(x, kernel, stride)[0]
        return out
