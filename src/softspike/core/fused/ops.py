"""The compiled kernels as PyTorch operators: `torch.ops.softspike.*`.

Each kernel is a `torch.library.custom_op` with a fake (shape-only) implementation and, where it
is differentiable, its gradient registered through `register_autograd`, so `torch.compile` sees
one graph node per op (no graph break), `torch.export` and FakeTensor tracing see its shapes, and
`torch.func` transforms it. The CPU implementations call the ctypes library of
`softspike.core.fused.native` (a plain C++ file that builds in seconds; a TORCH_LIBRARY build
would need torch's headers and a minute of compiling per source change on these machines).

The op is the one place that checks its arguments (device, dtype, shape, contiguity, empty
tensors): every caller, compiled or not, passes here. Inputs of any layout are accepted; an
input whose elements are dense in memory (contiguous, channels_last, a permutation) is read in
place and the output comes back with the same strides, any other input is copied once and its
output is contiguous, as with PyTorch's elementwise ops.

    lif_multistep(x [T, ...], w, ...) -> spikes [T, ...]     IF, LIF, parametric LIF (k = sigmoid(w))
    lif_multistep_backward(grad, x, w, ...) -> (dL/dX, dL/dk)   BPTT with H recomputed from X
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from softspike.core.errors import KernelInputError
from softspike.core.fused import native
from softspike.core.fused.pool import POOL

DYNAMICS = {"if": 0, "lif": 1, "plif": 2}
N_GATES = 7  # sigmoid, atan, piecewise_quadratic, fast_sigmoid, erf, triangle, straight_through


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


# -- the multi-step neuron kernels ------------------------------------------------------------------


def _check_lif(op: str, x: Tensor, w: Tensor, dyn: int, tau: float, numbers: dict[str, float]) -> None:
    check_tensor(op, "x", x, min_dim=1)
    check_tensor(op, "w", w)
    if w.numel() != 1:
        raise KernelInputError(f"softspike::{op}: w must hold one number (parametric LIF's weight), got {w.numel()}")
    if dyn not in DYNAMICS.values():
        raise KernelInputError(f"softspike::{op}: dyn must be 0 (IF), 1 (LIF) or 2 (parametric LIF), got {dyn}")
    check_number(op, "tau", tau, positive=True)
    for name, value in numbers.items():
        check_number(op, name, value)


def _k(w: Tensor, dyn: int) -> float:
    return float(torch.sigmoid(w.detach()).reshape(())) if dyn == DYNAMICS["plif"] else 0.0


@torch.library.custom_op("softspike::lif_multistep", mutates_args=(), device_types="cpu")
def lif_multistep(
    x: Tensor, w: Tensor, dyn: int, tau: float, v_rest: float, v_threshold: float, v_reset: float, hard: bool,
    detach: bool, gate: int, alpha: float, width: float, straight: bool = False,
) -> Tensor:
    """Spikes [T, ...] of IF / LIF / parametric LIF neurons for input x [T, ...], from rest.

        H(t) = V + X(t)  |  V + (X(t) - (V - V_rest)) / tau  |  V + (X(t) - (V - V_rest))·sigmoid(w)
        S(t) = Θ(H(t) - V_th);  V(t) = V_reset if S(t) (hard) else H(t) - V_th·S(t) (soft)

    `detach`, `gate`, `alpha`, `width` and `straight` (the 2020 straight-through reset gradient,
    CUDA kernels only) choose the backward (see `lif_multistep_backward`).
    """
    _check_lif("lif_multistep", x, w, dyn, tau, {"v_rest": v_rest, "v_threshold": v_threshold, "v_reset": v_reset})
    perm = memory_order(x, lead=1)
    out = pooled_like(x.shape, perm)
    if x.numel() == 0:
        return out
    xp = x.permute(perm).contiguous()  # a view unless x's memory is not dense
    T = x.shape[0]
    lib().ss_linear_forward(
        ptr(xp), ptr(out), T, x.numel() // T, dyn, tau, _k(w, dyn), v_rest, v_threshold, v_reset, int(hard),
        torch.get_num_threads(),
    )
    return out


@lif_multistep.register_fake
def _(x: Tensor, w: Tensor, dyn: int, tau: float, v_rest: float, v_threshold: float, v_reset: float, hard: bool,
      detach: bool, gate: int, alpha: float, width: float, straight: bool = False) -> Tensor:
    _check_lif("lif_multistep", x, w, dyn, tau, {"v_rest": v_rest, "v_threshold": v_threshold, "v_reset": v_reset})
    return torch.empty_permuted(x.shape, memory_order(x, lead=1), dtype=x.dtype, device=x.device)


@torch.library.custom_op("softspike::lif_multistep_backward", mutates_args=(), device_types="cpu")
def lif_multistep_backward(
    grad: Tensor, x: Tensor, w: Tensor, dyn: int, tau: float, v_rest: float, v_threshold: float, v_reset: float,
    hard: bool, detach: bool, gate: int, alpha: float, width: float, straight: bool = False,
) -> tuple[Tensor, Tensor]:
    """(dL/dX [T, ...], dL/dk as a float64 scalar) of `lif_multistep` for dL/dS = grad.

    BPTT with ∂S/∂H = σ'(H - V_th) of gate `gate` (parameters alpha, width), H recomputed from x.
    """
    op = "lif_multistep_backward"
    _check_lif(op, x, w, dyn, tau, {"v_rest": v_rest, "v_threshold": v_threshold, "v_reset": v_reset,
                                    "alpha": alpha, "width": width})
    check_tensor(op, "grad", grad)
    if grad.shape != x.shape:
        raise KernelInputError(f"softspike::{op}: grad has shape {list(grad.shape)}, x has {list(x.shape)}")
    if not 0 <= gate < N_GATES:
        raise KernelInputError(f"softspike::{op}: gate must be a compiled gate id in [0, {N_GATES}), got {gate}")
    if straight and not detach:
        raise KernelInputError(f"softspike::{op}: the CPU kernels have no straight-through reset gradient")
    perm = memory_order(x, lead=1)
    gx = pooled_like(x.shape, perm)
    gk = torch.zeros((), dtype=torch.float64)
    if x.numel() == 0:
        return gx, gk
    xp = x.permute(perm).contiguous()
    gs = grad.permute(perm).contiguous()  # the same memory order as x, element for element
    T = x.shape[0]
    acc = ctypes.c_double(0.0)
    lib().ss_linear_backward(
        ptr(xp), ptr(gs), ptr(gx), ctypes.byref(acc), T, x.numel() // T, dyn, tau, _k(w, dyn), v_rest, v_threshold,
        v_reset, int(hard), int(detach), gate, alpha, width, torch.get_num_threads(),
    )
    gk.fill_(acc.value)
    return gx, gk


@lif_multistep_backward.register_fake
def _(grad: Tensor, x: Tensor, w: Tensor, dyn: int, tau: float, v_rest: float, v_threshold: float, v_reset: float,
      hard: bool, detach: bool, gate: int, alpha: float, width: float, straight: bool = False
      ) -> tuple[Tensor, Tensor]:
    perm = memory_order(x, lead=1)
    gx = torch.empty_permuted(x.shape, perm, dtype=x.dtype, device=x.device)
    return gx, x.new_empty((), dtype=torch.float64)


_LIF_ARGS = ("dyn", "tau", "v_rest", "v_threshold", "v_reset", "hard", "detach", "gate", "alpha", "width", "straight")


def _lif_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, w = inputs[0], inputs[1]
    ctx.save_for_backward(x, w)
    ctx.args = inputs[2:]


def _lif_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    x, w = ctx.saved_tensors
    with torch.no_grad():  # first order only: the kernel's BPTT has no derivative of its own
        gx, gk = lif_multistep_backward(grad, x, w, *ctx.args)
    grad_w = None
    if ctx.args[0] == DYNAMICS["plif"] and ctx.needs_input_grad[1]:
        kt = torch.sigmoid(w.detach())
        grad_w = (gk.to(w.dtype) * kt * (1.0 - kt)).reshape(w.shape)
    return (gx, grad_w) + (None,) * len(ctx.args)


lif_multistep.register_autograd(_lif_backward, setup_context=_lif_setup)


class LifMultistep(torch.autograd.Function):
    """`lif_multistep` with its gradient, as an autograd Function in the `setup_context` style.

    The op's own `register_autograd` serves autograd, torch.compile and export, but torch.func
    refuses the Function that custom_op generates for it (pytorch/pytorch#168393: it lacks a
    `setup_context`); this wrapper runs the same forward and backward ops under every transform.
    """

    generate_vmap_rule = True  # the ops inside carry their own vmap rules

    @staticmethod
    def forward(x: Tensor, w: Tensor, *args: Any) -> Tensor:  # type: ignore[override]
        return lif_multistep(x, w, *args)  # type: ignore[no-any-return]

    setup_context = staticmethod(_lif_setup)  # type: ignore[assignment]
    backward = staticmethod(_lif_backward)  # type: ignore[assignment]


def _lif_vmap(info: Any, in_dims: tuple[Any, ...], x: Tensor, w: Tensor, *args: Any) -> tuple[Tensor, int]:
    # Neurons are independent: a batch of inputs is more neurons, folded in beside T.
    if in_dims[1] is None:
        out = lif_multistep(x.movedim(in_dims[0], 1), w, *args)
        return out, 1
    xs = x.movedim(in_dims[0], 0) if in_dims[0] is not None else x.expand(info.batch_size, *x.shape)
    ws = w.movedim(in_dims[1], 0)
    return torch.stack([lif_multistep(xi, wi, *args) for xi, wi in zip(xs, ws)]), 0


def _lif_backward_vmap(
    info: Any, in_dims: tuple[Any, ...], grad: Tensor, x: Tensor, w: Tensor, *args: Any
) -> tuple[tuple[Tensor, Tensor], tuple[int, int]]:
    # dL/dk sums over every neuron, so each batch entry runs on its own.
    def entry(t: Tensor, d: int | None, i: int) -> Tensor:
        return t.select(d, i) if d is not None else t

    gxs, gks = [], []
    for i in range(info.batch_size):
        gx, gk = lif_multistep_backward(entry(grad, in_dims[0], i), entry(x, in_dims[1], i), entry(w, in_dims[2], i),
                                        *args)
        gxs.append(gx)
        gks.append(gk)
    return (torch.stack(gxs), torch.stack(gks)), (0, 0)


torch.library.register_vmap("softspike::lif_multistep", _lif_vmap)
torch.library.register_vmap("softspike::lif_multistep_backward", _lif_backward_vmap)
