"""The autograd Function around the compiled kernels (declared linear charges, CPU float32).

Saves only the input X (the kernel recomputes H from it in backward), so a training step holds no
per-step activation of its own beyond the tensor the previous layer produced.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor

from softspike.core.fused.pool import POOL
from softspike.core.fused.torch_ops import Plan
from softspike.core.neuron import FireConfig
from softspike.core.surrogate import Surrogate

#: The kernels' gate numbers, by the name a gate declares (`Surrogate.kernel()`).
GATES: dict[str, int] = {
    "sigmoid": 0, "atan": 1, "piecewise_quadratic": 2, "fast_sigmoid": 3, "erf": 4, "triangle": 5,
    "straight_through": 6,
}


def supports(plan: Plan | None, cfg: FireConfig, x: Tensor) -> str | None:
    """None if the kernels can run this case, else why not."""
    if plan is None:
        return "the dynamics declares no linear charge"
    if plan.charge.adaptation is not None:
        return "an adaptive threshold runs on the tensor-op path"
    gate = cfg.surrogate.kernel()
    if gate is None or gate.name not in GATES:
        return f"no compiled gate for {type(cfg.surrogate).__name__}"
    if cfg.reset_grad != "surrogate" and not cfg.detach_reset:
        return f"reset_grad={cfg.reset_grad!r} runs on the tensor-op path"
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return "the compiled kernels take CPU float32"
    return None


def kernel_numbers(plan: Plan, w: Tensor) -> tuple[int, float, float]:
    """(dynamics number, τ, k) of the kernels' charge: 0 H = V + X, 1 divides by τ, 2 multiplies by k."""
    decl = plan.charge
    if decl.k_logit is not None:
        return 2, 1.0, float(torch.sigmoid(w.detach()))
    if decl.tau is not None:
        return 1, float(decl.tau), 0.0
    return 0, 1.0, 0.0


def _gate_args(gate: Surrogate) -> tuple[int, float, float]:
    k = gate.kernel()
    assert k is not None
    return GATES[k.name], float(k.alpha), float(k.width)


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


class FusedNative(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: Tensor, w: Tensor, plan: Plan, lib: Any) -> Tensor:
        cfg = plan.cfg
        x = x_seq.contiguous()
        T, M = x.shape[0], x.numel() // x.shape[0]
        dyn_id, tau, k = kernel_numbers(plan, w)
        hard = cfg.v_reset is not None
        spikes = POOL.empty(x.shape)
        lib.ss_linear_forward(
            _ptr(x), _ptr(spikes), T, M, dyn_id, tau, k, cfg.v_rest, cfg.v_threshold,
            cfg.v_reset if hard else 0.0, int(hard), torch.get_num_threads(),
        )
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(x, w)
        ctx.args = (plan, lib, T, M, dyn_id, tau, k, hard)
        return spikes

    @staticmethod
    def backward(ctx: Any, grad_s: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, w = ctx.saved_tensors
        plan, lib, T, M, dyn_id, tau, k, hard = ctx.args
        cfg = plan.cfg
        gs = grad_s.contiguous()
        gx = POOL.empty(x.shape)
        gk = ctypes.c_double(0.0)
        gate, alpha, width = _gate_args(cfg.surrogate)
        lib.ss_linear_backward(
            _ptr(x), _ptr(gs), _ptr(gx), ctypes.byref(gk), T, M, dyn_id, tau, k,
            cfg.v_rest, cfg.v_threshold, cfg.v_reset if hard else 0.0, int(hard), int(cfg.detach_reset),
            gate, alpha, width, torch.get_num_threads(),
        )
        grad_w = None
        if ctx.needs_input_grad[1]:
            kt = torch.sigmoid(w.detach())
            grad_w = (torch.tensor(gk.value, dtype=w.dtype) * kt * (1.0 - kt)).reshape(w.shape)
        return (gx if ctx.needs_input_grad[0] else None), grad_w, None, None
