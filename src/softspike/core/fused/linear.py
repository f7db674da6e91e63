"""A linear layer for spike input: adds up the weight columns of the inputs that fired.

With binary input X, Y = X·Wᵀ + b is a sum over the active inputs, and so is the weight gradient
dW = dYᵀ·X. At the ~5-20% spike rates of SNNs this is several times less work than a dense matmul,
and the layer keeps X for backward as bits (32x smaller than float). Non-binary input, or a case
the compiled kernels do not cover, takes the dense path with the same result.

The sums run in another order than a BLAS matmul, so Y agrees with `nn.Linear` to float32
rounding, not bit for bit.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor, nn

from softspike.core.fused import native
from softspike.core.fused.pool import POOL

_MAX_OUT = 1 << 16
_MIN_GATHER_OUT = 64


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


class _SpikeLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, lib: Any) -> Tensor:
        n_out, n_in = weight.shape
        x2 = x.reshape(-1, n_in).contiguous()
        R = x2.shape[0]
        wt = weight.detach().t().contiguous()
        b = bias.detach().contiguous() if bias is not None else None
        # Few outputs: each active input adds a short row, a dense matmul is faster forward.
        gather = n_out >= _MIN_GATHER_OUT
        out = POOL.empty((R, n_out)) if gather else None
        bits = torch.empty((R, (n_in + 63) // 64), dtype=torch.int64)
        ok = lib.ss_spike_linear_forward(_ptr(x2), R, n_in, _ptr(wt), _ptr(b), _ptr(out), n_out, _ptr(bits),
                                         torch.get_num_threads())
        ctx.dense = not ok
        if not (ok and gather):
            out = nn.functional.linear(x2, weight, bias)
        ctx.save_for_backward(x2 if ctx.dense else bits, weight)
        ctx.shape, ctx.lib, ctx.has_bias = x.shape, lib, bias is not None
        assert out is not None
        return out.view(*x.shape[:-1], n_out)

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        saved, weight = ctx.saved_tensors
        n_out, n_in = weight.shape
        gy2 = gy.reshape(-1, n_out).contiguous()
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = (gy2 @ weight).view(ctx.shape)
        if ctx.needs_input_grad[1]:
            if ctx.dense:
                gw = gy2.t() @ saved
            else:
                gw = torch.empty((n_out, n_in), dtype=gy2.dtype)
                ctx.lib.ss_spike_linear_wgrad(_ptr(saved), gy2.shape[0], n_in, _ptr(gy2), n_out, _ptr(gw),
                                              torch.get_num_threads())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy2.sum(0)
        return gx, gw, gb, None


def spike_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """`nn.functional.linear` for spike input (any input works; binary input runs sparse)."""
    lib = native.load()
    if (
        lib is None or x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32
        or weight.shape[0] > _MAX_OUT or x.numel() == 0 or (bias is not None and bias.dtype != torch.float32)
    ):
        return nn.functional.linear(x, weight, bias)
    out: Tensor = _SpikeLinear.apply(x, weight, bias, lib)
    return out


class SpikeLinear(nn.Linear):
    """`nn.Linear` whose input is spikes: same parameters, same results to rounding, less work."""

    def forward(self, x: Tensor) -> Tensor:
        return spike_linear(x, self.weight, self.bias)
