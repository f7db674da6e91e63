"""Batch norm in training mode fused into the linear-neuron scan after it: `torch.ops.softspike.bn_lif`.

Unfused, a conv block's batch norm reads its input twice (statistics, then normalisation), writes
its output, and the neuron reads that output again; backward adds batch norm's own reduction and
normalisation passes over the neuron's input gradient, and autograd keeps both X and batch norm's
output. Fused, with a = γ/√(var + ε) and b = β − mean·a per channel:

    forward    one reduction for the batch statistics (torch's own `batch_norm_update_stats`, so the
               running statistics move exactly as nn.BatchNorm2d moves them), then one pass that
               normalises, charges and fires: Xn = X·a + b, H = f(V, Xn), S = Θ(H − V_th), reset
    backward   the scan's BPTT on Xn rebuilt from X gives g = dL/dXn; one reduction gives Σg and
               Σg·(X − mean) per channel (dL/dβ and dL/dγ); one pass turns g into dL/dX in place

Only X is kept for backward (with the statistics), not batch norm's output. The normalisation is
batch norm's own arithmetic (x·a + b, a and b as torch computes them from the same statistics) and
the scan is the neuron kernel's, so the spikes are those of `nn.BatchNorm2d` followed by the neuron;
gradients agree to float32 rounding (the sums run in another order).

`bn_neuron(bn, neuron, x)` runs a BatchNorm module and a `Neuron` fused when both allow it and
returns None otherwise; `FusingSequential` (the builder's container) calls it for each adjacent pair.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import torch
from torch import Tensor, nn

from softspike.core.errors import KernelInputError
from softspike.kernels import native
from softspike.kernels.common import check_tensor, lib, memory_order, pooled_like, ptr
from softspike.kernels.scan_native import DYNAMICS, _check_lif, _k, kernel_args, lif_multistep_backward
from softspike.kernels.scan_torch import k_logit, plan_for

_i64, _f32, _i32, _p = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
_SIGNATURES = {
    "ss_bn_lif_forward": [_p, _p, _p, _p, _i64, _i64, _i64, _i64, _i32, _f32, _f32, _f32, _f32, _f32, _i32, _i32],
    "ss_bn_affine": [_p, _p, _p, _p, _i64, _i64, _i64, _i64, _i32],
    "ss_bn_grad_sums": [_p, _p, _p, _p, _i64, _i64, _i64, _i64, _i32],
    "ss_bn_grad_apply": [_p, _p, _p, _p, _p, _p, _i64, _i64, _i64, _i64, _i32],
}


def _kernel(name: str) -> Any:
    fn = getattr(lib(), name)
    if fn.argtypes is None:
        fn.argtypes, fn.restype = _SIGNATURES[name], None
    return fn


def _layout(x: Tensor) -> tuple[Tensor, list[int], int, int, int, int]:
    """(x dense in memory order, that order, T, M, C, inner): the channel of a row's element j is (j // inner) % C."""
    perm = memory_order(x, lead=1)
    xp = x.permute(perm).contiguous()  # a view unless x's memory is not dense
    q = perm.index(2)
    inner = math.prod(xp.shape[q + 1:])
    T = x.shape[0]
    return xp, perm, T, x.numel() // T, x.shape[2], inner


def _check(op: str, x: Tensor, weight: Tensor, bias: Tensor, mean_like: list[Tensor]) -> None:
    check_tensor(op, "x", x)
    if x.dim() < 3 or x.shape[0] == 0 or x.shape[1] == 0:
        raise KernelInputError(f"softspike::{op}: x must be [T, B, C, ...] with T, B >= 1, got {list(x.shape)}")
    C = x.shape[2]
    for name, t in (("weight", weight), ("bias", bias), *((f"stat{i}", s) for i, s in enumerate(mean_like))):
        check_tensor(op, name, t)
        if t.shape != (C,):
            raise KernelInputError(f"softspike::{op}: {name} must have shape [{C}], got {list(t.shape)}")
    if x.numel() // C < 2:
        raise KernelInputError(f"softspike::{op}: batch norm needs more than one value per channel, got "
                               f"{list(x.shape)}")


def _affine(weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor) -> tuple[Tensor, Tensor]:
    """Batch norm's linear and constant terms, a = invstd·γ and b = β − mean·a, as torch forms them."""
    a = invstd * weight.detach()
    return a, bias.detach() - mean * a


def batch_stats(x: Tensor, running_mean: Tensor, running_var: Tensor, momentum: float, eps: float
                ) -> tuple[Tensor, Tensor]:
    """(mean, 1/√(var + ε)) per channel of x [T, B, C, ...] over its T·B samples; the running statistics
    are updated in place as nn.BatchNorm2d updates them (by the same torch reduction)."""
    if not (math.isfinite(momentum) and 0.0 <= momentum <= 1.0):
        raise KernelInputError(f"softspike::bn_lif: momentum must be in [0, 1], got {momentum!r}")
    if not (math.isfinite(eps) and eps > 0.0):
        raise KernelInputError(f"softspike::bn_lif: eps must be a finite number > 0, got {eps!r}")
    mean, var = torch.batch_norm_update_stats(x.detach().flatten(0, 1), running_mean, running_var, momentum)
    return mean, (1.0 / torch.sqrt(var.double() + eps)).float()


@torch.library.custom_op("softspike::bn_lif", mutates_args=(), device_types="cpu")
def bn_lif(
    x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor, w: Tensor, dyn: int, tau: float,
    v_rest: float, v_threshold: float, v_reset: float, hard: bool, detach: bool, gate: int, alpha: float, width: float,
) -> Tensor:
    """Spikes [T, B, C, ...] of batch norm in training mode (`mean`, `invstd`: x's own batch statistics from
    `batch_stats`; the gradient counts their dependence on x) followed by `lif_multistep`'s neuron."""
    op = "bn_lif"
    _check(op, x, weight, bias, [mean, invstd])
    _check_lif(op, x, w, dyn, tau, {"v_rest": v_rest, "v_threshold": v_threshold, "v_reset": v_reset})
    a, b = _affine(weight, bias, mean, invstd)
    xp, perm, T, M, C, inner = _layout(x)
    out = pooled_like(x.shape, perm)
    _kernel("ss_bn_lif_forward")(ptr(xp), ptr(a), ptr(b), ptr(out.permute(perm)), T, M, C, inner, dyn, tau,
                                 _k(w, dyn), v_rest, v_threshold, v_reset, int(hard), torch.get_num_threads())
    return out


@bn_lif.register_fake
def _(x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor, w: Tensor, dyn: int, tau: float,
      v_rest: float, v_threshold: float, v_reset: float, hard: bool, detach: bool, gate: int, alpha: float,
      width: float) -> Tensor:
    _check("bn_lif", x, weight, bias, [mean, invstd])
    return torch.empty_permuted(x.shape, memory_order(x, lead=1), dtype=x.dtype, device=x.device)


@torch.library.custom_op("softspike::bn_lif_backward", mutates_args=(), device_types="cpu")
def bn_lif_backward(
    grad: Tensor, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor, w: Tensor, dyn: int,
    tau: float, v_rest: float, v_threshold: float, v_reset: float, hard: bool, detach: bool, gate: int, alpha: float,
    width: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dL/dX, dL/dγ, dL/dβ, dL/dk as a float64 scalar) of `bn_lif` for dL/dS = grad."""
    op = "bn_lif_backward"
    _check(op, x, weight, bias, [mean, invstd])
    check_tensor(op, "grad", grad)
    if grad.shape != x.shape:
        raise KernelInputError(f"softspike::{op}: grad has shape {list(grad.shape)}, x has {list(x.shape)}")
    a, b = _affine(weight, bias, mean, invstd)
    xp, perm, T, M, C, inner = _layout(x)
    nthreads = torch.get_num_threads()
    xn = pooled_like(x.shape, perm)
    xnp = xn.permute(perm)  # dense, x's memory order
    _kernel("ss_bn_affine")(ptr(xp), ptr(a), ptr(b), ptr(xnp), T, M, C, inner, nthreads)
    with torch.no_grad():
        g, gk = lif_multistep_backward(grad, xn, w, dyn, tau, v_rest, v_threshold, v_reset, hard, detach, gate,
                                       alpha, width)
    del xn, xnp
    gp = g.permute(perm)  # the same memory order as x (the op writes x's order)
    sums = torch.empty(2 * C, dtype=torch.float64)
    _kernel("ss_bn_grad_sums")(ptr(gp), ptr(xp), ptr(mean), ptr(sums), T, M, C, inner, nthreads)
    n = x.numel() // C
    sg, sgm = sums[:C], sums[C:]
    inv = invstd.double()
    gweight = (inv * sgm).float()
    gbias = sg.float()
    a64 = a.double()
    c2 = (-a64 * inv * inv * sgm / n).float()
    c3 = (-a64 * sg / n).float()
    _kernel("ss_bn_grad_apply")(ptr(gp), ptr(xp), ptr(a), ptr(mean), ptr(c2), ptr(c3), T, M, C, inner, nthreads)
    return g, gweight, gbias, gk


@bn_lif_backward.register_fake
def _(grad: Tensor, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor, invstd: Tensor, w: Tensor, dyn: int,
      tau: float, v_rest: float, v_threshold: float, v_reset: float, hard: bool, detach: bool, gate: int,
      alpha: float, width: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gx = torch.empty_permuted(x.shape, memory_order(x, lead=1), dtype=x.dtype, device=x.device)
    return gx, torch.empty_like(weight), torch.empty_like(bias), x.new_empty((), dtype=torch.float64)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.save_for_backward(*inputs[:6])  # x, weight, bias, mean, invstd, w
    ctx.args = inputs[6:]


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    x, weight, bias, mean, invstd, w = ctx.saved_tensors
    with torch.no_grad():  # first order only, like the scan's own backward
        gx, gweight, gbias, gk = bn_lif_backward(grad, x, weight, bias, mean, invstd, w, *ctx.args)
    grad_w = None
    if ctx.args[0] == DYNAMICS["plif"] and ctx.needs_input_grad[5]:
        kt = torch.sigmoid(w.detach())
        grad_w = (gk.to(w.dtype) * kt * (1.0 - kt)).reshape(w.shape)
    return (gx, gweight, gbias, None, None, grad_w) + (None,) * len(ctx.args)


bn_lif.register_autograd(_backward, setup_context=_setup)


class _BnLif(torch.autograd.Function):
    """The op with its gradient in the `setup_context` style, which torch.func accepts (see ops.py)."""

    @staticmethod
    def forward(*inputs: Any) -> Tensor:  # type: ignore[override]
        return bn_lif(*inputs)  # type: ignore[no-any-return]

    setup_context = staticmethod(_setup)  # type: ignore[assignment]
    backward = staticmethod(_backward)  # type: ignore[assignment]


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _batch_norm_of(module: nn.Module) -> nn.modules.batchnorm._BatchNorm | None:
    inner = getattr(module, "module", module)  # softspike.layers.MultiStep wraps it
    return inner if isinstance(inner, _BATCH_NORMS) and type(inner) in _BATCH_NORMS else None


def _hooked(m: nn.Module, forward_hooks: bool = True) -> bool:
    """Whether m has a hook the fused op would pass over (forward hooks are run: see FusingSequential)."""
    return bool(m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks or "forward" in m.__dict__
                or (forward_hooks and m._forward_hooks))


def _after_forward(neuron: nn.Module, out: Tensor) -> Tensor:
    """The neuron's forward hooks (monitors), run on the fused output; their args are empty (the
    normalised input is never formed)."""
    for key, hook in list(neuron._forward_hooks.items()):
        result = hook(neuron, (), {}, out) if key in neuron._forward_hooks_with_kwargs else hook(neuron, (), out)
        if result is not None:
            out = result
    return out


def fusable(bn_module: nn.Module, neuron: nn.Module, x: Tensor) -> str | None:
    """None if `bn_neuron` runs this pair fused on x [T, B, C, ...], else why not."""
    from softspike.core.neuron import Neuron

    bn = _batch_norm_of(bn_module)
    if bn is None or not isinstance(neuron, Neuron):
        return "not a batch norm followed by a neuron"
    if not bn.training or not bn.track_running_stats or not bn.affine or bn.running_mean is None:
        return "batch norm in eval mode, or without running statistics or affine parameters"
    if neuron.step_mode != "m":
        return "the neuron is in single-step mode"
    if any(_hooked(m) for m in {bn_module, bn}) or _hooked(neuron, forward_hooks=False):
        return "a hook or a replaced forward on the batch norm, or one that must see the neuron's input"
    if not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active():
        return "under a torch.func transform"
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() < 3 or x.shape[2] != bn.num_features:
        return "the kernels take CPU float32 [T, B, C, ...]"
    if x.shape[0] == 0 or x.numel() // x.shape[2] < 2 or not native.available():
        return "empty input, or the compiled kernels are not available"
    backends = neuron.__dict__.get("_backends")
    if backends is None:
        from softspike.core.registry import get_registry

        backends = get_registry().backends
    try:
        chosen, _ = backends.select(neuron.dynamics, neuron.cfg, x, neuron.backend)
    except Exception as err:  # the unfused neuron reports it
        return str(err)
    return None if chosen.name == "native" else f"the neuron runs on the {chosen.name} backend"


def bn_neuron(bn_module: nn.Module, neuron: nn.Module, x: Tensor) -> Tensor | None:
    """`neuron(bn_module(x))` for x [T, B, C, ...] in one fused op, or None where `fusable` says no."""
    from softspike.core.neuron import Neuron

    if fusable(bn_module, neuron, x) is not None or not isinstance(neuron, Neuron):
        return None
    bn = _batch_norm_of(bn_module)
    assert bn is not None and bn.running_mean is not None and bn.running_var is not None
    assert bn.weight is not None and bn.bias is not None and bn.num_batches_tracked is not None
    # nn.BatchNorm's own bookkeeping: the step count, and its cumulative average when momentum is None.
    bn.num_batches_tracked.add_(1)
    momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else float(bn.momentum)
    plan = plan_for(neuron.dynamics, neuron.cfg)
    assert plan is not None
    neuron.backend_used = "native"
    mean, invstd = batch_stats(x, bn.running_mean, bn.running_var, momentum, float(bn.eps))
    out: Tensor = _BnLif.apply(x, bn.weight, bn.bias, mean, invstd, k_logit(plan, x), *kernel_args(plan, plan.cfg))
    return _after_forward(neuron, out)


class FusingSequential(nn.Sequential):
    """`nn.Sequential` that runs each batch norm and the neuron right after it as one fused op where
    `fusable` allows (training mode, CPU float32, a neuron the native kernels run, no hook on the batch
    norm); modules, parameters and state dict are those of the plain Sequential. The neuron's forward
    hooks (firing-rate monitors) still run, on its spikes, with empty args."""

    def forward(self, x: Tensor) -> Tensor:
        mods = list(self)
        i = 0
        while i < len(mods):
            if i + 1 < len(mods) and _batch_norm_of(mods[i]) is not None:
                y = bn_neuron(mods[i], mods[i + 1], x)
                if y is not None:
                    x, i = y, i + 2
                    continue
            x = mods[i](x)
            i += 1
        return x
