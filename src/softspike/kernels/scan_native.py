"""The multi-step neuron scans on the CPU (float32), as `torch.ops.softspike.lif_multistep` (csrc/scan.cpp).

Each kernel is a `torch.library.custom_op` with a fake (shape-only) implementation and its gradient
registered through `register_autograd`, so `torch.compile` sees one graph node per op (no graph
break), `torch.export` and FakeTensor tracing see its shapes, and `torch.func` transforms it. The
CPU implementations call the ctypes library of `softspike.kernels.native` (plain C++ that builds in
seconds; a TORCH_LIBRARY build would need torch's headers and a minute of compiling per source
change on these machines).

The op is the one place that checks its arguments (device, dtype, shape, contiguity, empty
tensors): every caller, compiled or not, passes here. Inputs of any layout are accepted; an
input whose elements are dense in memory (contiguous, channels_last, a permutation) is read in
place and the output comes back with the same strides, any other input is copied once and its
output is contiguous, as with PyTorch's elementwise ops. Only the input X is saved for backward
(the kernel recomputes H from it), so a training step holds no per-step activation of its own.

    lif_multistep(x [T, ...], w, ...) -> spikes [T, ...]     IF, LIF, parametric LIF (k = sigmoid(w))
    lif_multistep_backward(grad, x, w, ...) -> (dL/dX, dL/dk)   BPTT with H recomputed from X

`DYNAMICS` and `GATES` are the kernels' numbering, written here once: the C++ header's enums and the
Triton kernels' constants are checked against them (tests/test_kernel_tables.py).
"""

from __future__ import annotations

import ctypes
from typing import Any, NamedTuple

import torch
from torch import Tensor

from softspike.core.errors import KernelInputError
from softspike.core.step import FireConfig
from softspike.kernels.common import check_number, check_tensor, lib, memory_order, pooled_like, ptr
from softspike.kernels.scan_torch import Plan

#: The kernels' charge numbers: 0 H = V + X, 1 divides by τ, 2 multiplies by k = sigmoid(w).
DYNAMICS: dict[str, int] = {"if": 0, "lif": 1, "plif": 2}
#: The kernels' gate numbers, by the name a gate declares (`Surrogate.kernel()`).
GATES: dict[str, int] = {
    "sigmoid": 0, "atan": 1, "piecewise_quadratic": 2, "fast_sigmoid": 3, "erf": 4, "triangle": 5,
    "straight_through": 6,
}
N_GATES = len(GATES)


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


def check_backward_args(grad: Tensor, x: Tensor, w: Tensor, dyn: int, tau: float, v_rest: float,
                        v_threshold: float, v_reset: float, gate: int, alpha: float, width: float) -> None:
    """The checks of `lif_multistep_backward`'s arguments, on every device's implementation."""
    op = "lif_multistep_backward"
    _check_lif(op, x, w, dyn, tau, {"v_rest": v_rest, "v_threshold": v_threshold, "v_reset": v_reset,
                                    "alpha": alpha, "width": width})
    check_tensor(op, "grad", grad)
    if grad.shape != x.shape:
        raise KernelInputError(f"softspike::{op}: grad has shape {list(grad.shape)}, x has {list(x.shape)}")
    if not 0 <= gate < N_GATES:
        raise KernelInputError(f"softspike::{op}: gate must be a compiled gate id in [0, {N_GATES}), got {gate}")


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
    check_backward_args(grad, x, w, dyn, tau, v_rest, v_threshold, v_reset, gate, alpha, width)
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


# -- what a neuron asks of these kernels --------------------------------------------------------


def declared_reason(plan: Plan | None, cfg: FireConfig) -> str | None:
    """None if these kernels' numbering covers the neuron (a linear charge without adaptation, a gate
    with a kernel number), else why not; every device's implementation of the ops asks this first."""
    if plan is None:
        return "the dynamics declares no linear charge"
    if plan.charge.adaptation is not None:
        return "an adaptive threshold runs on the tensor-op path"
    gate = cfg.surrogate.kernel()
    if gate is None or gate.name not in GATES:
        return f"no compiled gate for {type(cfg.surrogate).__name__}"
    return None


def supports(plan: Plan | None, cfg: FireConfig, x: Tensor) -> str | None:
    """None if the CPU kernels can run this case, else why not."""
    why = declared_reason(plan, cfg)
    if why is not None:
        return why
    if cfg.reset_grad != "surrogate" and not cfg.detach_reset:
        return f"reset_grad={cfg.reset_grad!r} runs on the tensor-op path"
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return "the compiled kernels take CPU float32"
    return None


class KernelArgs(NamedTuple):
    """The numbers `torch.ops.softspike.lif_multistep` takes besides the tensors."""

    dyn: int
    tau: float
    v_rest: float
    v_threshold: float
    v_reset: float
    hard: bool
    detach: bool
    gate: int
    alpha: float
    width: float


def kernel_args(plan: Plan, cfg: FireConfig) -> KernelArgs:
    """What the compiled kernel needs to know about a neuron (one place; see `supports`)."""
    decl = plan.charge
    if decl.k_logit is not None:
        dyn, tau = DYNAMICS["plif"], 1.0
    elif decl.tau is not None:
        dyn, tau = DYNAMICS["lif"], float(decl.tau)
    else:
        dyn, tau = DYNAMICS["if"], 1.0
    gate = cfg.surrogate.kernel()
    assert gate is not None  # see `supports`
    hard = cfg.v_reset is not None
    return KernelArgs(
        dyn, tau, cfg.v_rest, cfg.v_threshold, cfg.v_reset if cfg.v_reset is not None else 0.0, hard,
        cfg.detach_reset, GATES[gate.name], float(gate.alpha), float(gate.width),
    )


def fused_native(plan: Plan, x_seq: Tensor, w: Tensor) -> Tensor:
    """Spikes [T, B, ...] from the compiled kernel (an operator torch.compile and torch.func see)."""
    out: Tensor = LifMultistep.apply(x_seq, w, *kernel_args(plan, plan.cfg))
    return out
