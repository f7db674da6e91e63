"""The autograd Function around the compiled kernels (IF, LIF, parametric LIF on CPU float32).

Saves only the input X (the kernel recomputes H from it in backward), so a training step holds no
per-step activation of its own beyond the tensor the previous layer produced.
"""

from __future__ import annotations

import ctypes
from typing import Any

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics
from softspike.core.fused.pool import POOL
from softspike.core.fused.torch_ops import Plan
from softspike.core.neuron import FireConfig
from softspike.plugins import surrogates as sg
from softspike.plugins.neurons import IF, LIF, ParametricLIF

_DYN: dict[type, int] = {IF: 0, LIF: 1, ParametricLIF: 2}
_GATES: dict[type, int] = {
    sg.Sigmoid: 0, sg.ATan: 1, sg.PiecewiseQuadratic: 2, sg.FastSigmoid: 3, sg.Erf: 4, sg.Triangle: 5,
    sg.StraightThrough: 6,
}


def supports(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> str | None:
    """None if the kernels can run this case, else why not."""
    if type(dynamics) not in _DYN:
        return f"no compiled kernel for {type(dynamics).__name__}"
    if type(cfg.surrogate) not in _GATES:
        return f"no compiled gate for {type(cfg.surrogate).__name__}"
    if cfg.reset_grad != "surrogate" and not cfg.detach_reset:
        return f"reset_grad={cfg.reset_grad!r} runs on the tensor-op path"
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return "the compiled kernels take CPU float32"
    return None


def _gate_args(gate: Any) -> tuple[int, float, float]:
    return _GATES[type(gate)], float(gate.alpha), float(getattr(gate, "width", 1.0))


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


class FusedNative(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: Tensor, w: Tensor, plan: Plan, lib: Any) -> Tensor:
        dyn, cfg = plan.dynamics, plan.cfg
        x = x_seq.contiguous()
        T, M = x.shape[0], x.numel() // x.shape[0]
        k = float(torch.sigmoid(w.detach())) if isinstance(dyn, ParametricLIF) else 0.0
        tau = float(getattr(dyn, "tau", 1.0)) if isinstance(dyn, LIF) else 1.0
        hard = cfg.v_reset is not None
        spikes = POOL.empty(x.shape)
        lib.ss_linear_forward(
            _ptr(x), _ptr(spikes), T, M, _DYN[type(dyn)], tau, k, cfg.v_rest, cfg.v_threshold,
            cfg.v_reset if hard else 0.0, int(hard), torch.get_num_threads(),
        )
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(x, w)
        ctx.args = (plan, lib, T, M, tau, k, hard)
        return spikes

    @staticmethod
    def backward(ctx: Any, grad_s: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        x, w = ctx.saved_tensors
        plan, lib, T, M, tau, k, hard = ctx.args
        cfg = plan.cfg
        gs = grad_s.contiguous()
        gx = POOL.empty(x.shape)
        gk = ctypes.c_double(0.0)
        gate, alpha, width = _gate_args(cfg.surrogate)
        lib.ss_linear_backward(
            _ptr(x), _ptr(gs), _ptr(gx), ctypes.byref(gk), T, M, _DYN[type(plan.dynamics)], tau, k,
            cfg.v_rest, cfg.v_threshold, cfg.v_reset if hard else 0.0, int(hard), int(cfg.detach_reset),
            gate, alpha, width, torch.get_num_threads(),
        )
        grad_w = None
        if ctx.needs_input_grad[1]:
            kt = torch.sigmoid(w.detach())
            grad_w = (torch.tensor(gk.value, dtype=w.dtype) * kt * (1.0 - kt)).reshape(w.shape)
        return (gx if ctx.needs_input_grad[0] else None), grad_w, None, None
