"""A linear layer for spike input: adds up the weight columns of the inputs that fired.

With binary input X, Y = X·Wᵀ + b is a sum over the active inputs, and so is the weight gradient
dW = dYᵀ·X. At the ~5-20% spike rates of SNNs this is several times less work than a dense matmul,
and the layer keeps X for backward as bits (32x smaller than float). Non-binary input, or a case
the compiled kernels do not cover, takes the dense path with the same result.

The kernels are the operators `torch.ops.softspike.spike_linear` (forward: Y, X's rows as bits, and
whether X was binary) and `spike_linear_wgrad` (dW from the bits, or densely from X). Under
torch.compile or export, whether X is binary is not known while tracing, so X itself is kept for
backward as well; eager runs keep only the bits.

The sums run in another order than a BLAS matmul, so Y agrees with `nn.Linear` to float32
rounding, not bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from softspike.core.errors import KernelInputError
from softspike.kernels.common import check_tensor, lib, ptr
from softspike.kernels.pool import POOL

_MAX_OUT = 1 << 16
_MIN_GATHER_OUT = 64


def _check(op: str, x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[int, int, int]:
    """(rows R, inputs K, outputs O) after the checks of both spike-linear ops."""
    check_tensor(op, "x", x, min_dim=1)
    check_tensor(op, "weight", weight, min_dim=2)
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        raise KernelInputError(
            f"softspike::{op}: x [..., K] and weight [O, K] do not fit: {list(x.shape)} and {list(weight.shape)}"
        )
    n_out, n_in = weight.shape
    if n_out > _MAX_OUT:
        raise KernelInputError(f"softspike::{op}: at most {_MAX_OUT} outputs, got {n_out} (use nn.Linear)")
    if bias is not None:
        check_tensor(op, "bias", bias, min_dim=1)
        if bias.shape != (n_out,):
            raise KernelInputError(f"softspike::{op}: bias must have shape [{n_out}], got {list(bias.shape)}")
    return math.prod(x.shape[:-1]), n_in, n_out


@torch.library.custom_op("softspike::spike_linear", mutates_args=(), device_types="cpu")
def spike_linear_forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """(Y = X·Wᵀ + b [..., O], X's rows as bits [R, ceil(K/64)] int64, whether X is all 0/1)."""
    R, K, n_out = _check("spike_linear", x, weight, bias)
    x2 = x.reshape(R, K).contiguous()
    bits = torch.empty((R, (K + 63) // 64), dtype=torch.int64)
    if R == 0 or K == 0:  # nothing to add up: Y is the bias alone
        return nn.functional.linear(x2, weight.detach(), bias).reshape(*x.shape[:-1], n_out), bits.zero_(), torch.ones(
            (), dtype=torch.bool)
    wt = weight.detach().t().contiguous()
    b = bias.detach().contiguous() if bias is not None else None
    # Few outputs: each active input adds a short row, a dense matmul is faster forward.
    gather = n_out >= _MIN_GATHER_OUT
    out = POOL.empty((R, n_out)) if gather else None
    ok = bool(lib().ss_spike_linear_forward(ptr(x2), R, K, ptr(wt), ptr(b), ptr(out), n_out, ptr(bits),
                                            torch.get_num_threads()))
    if not (ok and gather):
        out = nn.functional.linear(x2, weight.detach(), b)
    assert out is not None
    return out.view(*x.shape[:-1], n_out), bits, torch.tensor(ok)


@spike_linear_forward.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    R, K, n_out = _check("spike_linear", x, weight, bias)
    return (x.new_empty((*x.shape[:-1], n_out)), x.new_empty((R, (K + 63) // 64), dtype=torch.int64),
            x.new_empty((), dtype=torch.bool))


@torch.library.custom_op("softspike::spike_linear_wgrad", mutates_args=(), device_types="cpu")
def spike_linear_wgrad(gy: Tensor, bits: Tensor, binary: Tensor, x: Tensor | None, n_in: int) -> Tensor:
    """dL/dW [O, K] = dL/dYᵀ·X for dL/dY [R, O] and K = n_in inputs: summed over the set bits when
    X was binary, else a dense matmul with x [R, K] (which must then be given)."""
    op = "spike_linear_wgrad"
    check_tensor(op, "gy", gy, min_dim=2)
    check_tensor(op, "bits", bits, dtype=torch.int64, min_dim=2)
    R, n_out = gy.shape
    if bits.shape != (R, (n_in + 63) // 64):
        raise KernelInputError(f"softspike::{op}: bits of shape {list(bits.shape)} do not fit {R} rows of {n_in}")
    if not bool(binary):
        if x is None or x.shape != (R, n_in):
            raise KernelInputError(f"softspike::{op}: X was not binary, so x [{R}, {n_in}] must be given")
        return gy.t() @ x
    gw = torch.empty((n_out, n_in), dtype=gy.dtype)
    if R == 0 or n_in == 0:
        return gw.zero_()
    lib().ss_spike_linear_wgrad(ptr(bits), R, n_in, ptr(gy.contiguous()), n_out, ptr(gw), torch.get_num_threads())
    return gw


@spike_linear_wgrad.register_fake
def _(gy: Tensor, bits: Tensor, binary: Tensor, x: Tensor | None, n_in: int) -> Tensor:
    return gy.new_empty((gy.shape[1], n_in))


def _concrete(t: Tensor) -> bool:
    """Whether t holds real data (not a tracer's stand-in under torch.compile or export)."""
    return type(t) is Tensor and not torch.compiler.is_compiling()


def _setup(ctx: Any, inputs: tuple[Tensor, Tensor, Tensor | None], output: tuple[Tensor, Tensor, Tensor]) -> None:
    x, weight, bias = inputs
    _, bits, binary = output
    # Binary input in eager on the CPU: the bits suffice. Elsewhere the flag stays on the device (reading
    # it would stall a GPU at every call), so X is kept too and the weight gradient chooses there.
    keep_x = not _concrete(binary) or binary.device.type != "cpu" or not bool(binary)
    ctx.save_for_backward(weight, bits, binary, x if keep_x else None)
    ctx.x_shape, ctx.has_bias = x.shape, bias is not None
    ctx.mark_non_differentiable(bits, binary)


def _backward(ctx: Any, gy: Tensor, *_: Any) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    weight, bits, binary, x = ctx.saved_tensors
    n_out, n_in = weight.shape
    gy2 = gy.reshape(-1, n_out)
    gx = gw = gb = None
    if ctx.needs_input_grad[0]:
        gx = (gy2 @ weight).view(ctx.x_shape)
    if ctx.needs_input_grad[1]:
        x2 = x.reshape(-1, n_in) if x is not None else None
        with torch.no_grad():
            gw = spike_linear_wgrad(gy2.contiguous(), bits, binary, x2, n_in)
    if ctx.has_bias and ctx.needs_input_grad[2]:
        gb = gy2.sum(0)
    return gx, gw, gb


spike_linear_forward.register_autograd(_backward, setup_context=_setup)


class _SpikeLinear(torch.autograd.Function):
    """The op with its gradient in the `setup_context` style, which torch.func accepts (the
    Function custom_op generates lacks it: pytorch/pytorch#168393)."""

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        return spike_linear_forward(x, weight, bias)  # type: ignore[no-any-return]

    setup_context = staticmethod(_setup)  # type: ignore[assignment]
    backward = staticmethod(_backward)  # type: ignore[assignment]


def spike_linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, backend: str = "auto") -> Tensor:
    """`nn.functional.linear` for spike input (any input works; binary input runs sparse). `backend`:
    "auto" (the CPU kernels, the Triton ones for CUDA tensors, else a dense matmul), or one of them
    forced: "native", "triton", "torch" (softspike.kernels.devices)."""
    from softspike.kernels.devices import spike_op_kernel

    limit = f"more than {_MAX_OUT} outputs" if weight.shape[0] > _MAX_OUT else None
    if spike_op_kernel("spike_linear", (x, weight, bias), backend, limit) == "torch":
        return nn.functional.linear(x, weight, bias)
    out: Tensor = _SpikeLinear.apply(x, weight, bias)[0]
    return out


class SpikeLinear(nn.Linear):
    """`nn.Linear` whose input is spikes: same parameters, same results to rounding, less work."""

    def __init__(self, *args: Any, backend: str = "auto", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backend = backend

    def forward(self, x: Tensor) -> Tensor:
        return spike_linear(x, self.weight, self.bias, getattr(self, "backend", "auto"))  # pickled before it had one
