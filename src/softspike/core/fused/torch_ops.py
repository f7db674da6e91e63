"""Fused multi-step neurons in plain tensor ops: runs on any device and for any surrogate.

Forward runs the reference arithmetic (the dynamics' own `charge`, `threshold`, `update`) without
building a graph and saves H for every step (ALIF also θ; parametric LIF also X, which its w
gradient needs). Backward is BPTT written by hand; with z = H - θ, σ' = surrogate.derivative(z):

    dV/dH = 1 - S (hard) | 1 (soft)            dV/dS = V_reset - H (hard) | -θ (soft), 0 if detached
    straight-through: S in V's gradient becomes σ = primitive(z), with dσ/dz = σ'
    dL/dz = (dL/dS + dL/dV·dV/dS)·σ',  dL/dH = dL/dV·dV/dH + dL/dz,  dL/dθ = -dL/dz (- dL/dV·S, soft)
    H = V + (X - (V - V_rest))·k:  dL/dX = dL/dH·k,  dL/dV(t-1) = dL/dH - dL/dX,
                                   dL/dk += dL/dH·(X - (V(t-1) - V_rest))
    ALIF: θ = V_th + β·a(t-1), a(t) = ρ·a(t-1) + S:  dL/da(t-1) = ρ·dL/da(t) + β·dL/dθ
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics
from softspike.core.neuron import FireConfig, _reset
from softspike.plugins.neurons import ALIF, IF, LIF, ParametricLIF

SUPPORTED: tuple[type[Dynamics], ...] = (IF, LIF, ParametricLIF, ALIF)


@dataclass(frozen=True)
class Plan:
    """What the fused function needs besides tensors."""

    dynamics: Dynamics
    cfg: FireConfig


def supports(dynamics: Dynamics) -> bool:
    """Built-in dynamics only (exact type: a subclass may change the charge equation)."""
    return type(dynamics) in SUPPORTED


def _reset_value(h: Tensor, s: Tensor, z: Tensor, theta: Tensor | float, cfg: FireConfig) -> Tensor:
    """V after firing, with the reference's exact arithmetic (straight-through included)."""
    if cfg.reset_grad == "straight_through" and not cfg.detach_reset:
        soft = _reset(h, cfg.surrogate.primitive(z), theta, cfg.v_reset)
        hard = _reset(h, s, theta, cfg.v_reset)
        return soft + (hard - soft)
    return _reset(h, s, theta, cfg.v_reset)


class FusedTorch(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: Tensor, w: Tensor, plan: Plan) -> Tensor:
        dyn, cfg = plan.dynamics, plan.cfg
        save = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        alif = isinstance(dyn, ALIF)
        spikes = torch.empty_like(x_seq)
        hs = torch.empty_like(x_seq) if save else None
        thetas = torch.empty_like(x_seq) if save and alif else None
        v = torch.full_like(x_seq[0], cfg.v_rest)
        state = dyn.initial_state(x_seq[0])
        for t in range(x_seq.shape[0]):
            h = dyn.charge(v, x_seq[t], state, cfg.v_rest)
            theta = dyn.threshold(cfg.v_threshold, state)
            z = h - theta
            s = (z >= 0).to(x_seq.dtype)
            spikes[t] = s
            if hs is not None:
                hs[t] = h
            if thetas is not None:
                thetas[t] = theta
            v = _reset_value(h, s, z, theta, cfg)
            state = dyn.update(state, s)
        ctx.plan = plan
        if save:
            ctx.save_for_backward(hs, thetas, x_seq if isinstance(dyn, ParametricLIF) else None, w)
        return spikes

    @staticmethod
    def backward(ctx: Any, grad_s: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        hs, thetas, x_seq, w = ctx.saved_tensors
        dyn, cfg = ctx.plan.dynamics, ctx.plan.cfg
        gate = cfg.surrogate
        hard = cfg.v_reset is not None
        vr = cfg.v_reset if cfg.v_reset is not None else 0.0
        straight = cfg.reset_grad == "straight_through" and not cfg.detach_reset
        plif, alif = isinstance(dyn, ParametricLIF), isinstance(dyn, ALIF)
        k: Tensor | float
        if plif:
            k = torch.sigmoid(w.detach())
        elif isinstance(dyn, (LIF, ALIF)):
            k = 1.0 / dyn.tau
        else:
            k = 1.0
        T = hs.shape[0]
        grad_x = torch.empty_like(hs)
        gv = torch.zeros_like(hs[0])
        ga = torch.zeros_like(hs[0]) if alif else None
        gk = torch.zeros((), dtype=torch.float64, device=hs.device) if plif else None

        for t in range(T - 1, -1, -1):
            h = hs[t]
            theta: Tensor | float = thetas[t] if alif else cfg.v_threshold
            z = h - theta
            s = (z >= 0).to(h.dtype)
            sg = gate.derivative(z)
            gs = grad_s[t] if ga is None else grad_s[t] + ga
            # What reaches S (or σ, straight-through) and H directly through the reset.
            g_theta = None
            if straight:
                sig = gate.primitive(z)
                if hard:
                    gh = gv * (1.0 - sig)
                    gs = gs + gv * (vr - h)
                else:
                    gh = gv
                    gs = gs - gv * theta
                    g_theta = -gv * sig
            else:
                gh = gv * (1.0 - s) if hard else gv
                if not cfg.detach_reset:
                    gs = gs + (gv * (vr - h) if hard else -gv * theta)
                if not hard:
                    g_theta = -gv * s
            gz = gs * sg
            gh = gh + gz
            if ga is not None:
                g_theta = -gz if g_theta is None else g_theta - gz
                ga = dyn.rho * ga + dyn.beta * g_theta
            if isinstance(dyn, IF):
                grad_x[t] = gh
                gv = gh
            else:
                gx = gh / dyn.tau if isinstance(dyn, (LIF, ALIF)) else gh * k
                grad_x[t] = gx
                gv = gh - gx
            if gk is not None:
                if t > 0:
                    hp = hs[t - 1]
                    zp = hp - cfg.v_threshold
                    v_prev = _reset_value(hp, (zp >= 0).to(hp.dtype), zp, cfg.v_threshold, cfg)
                else:
                    v_prev = torch.full_like(h, cfg.v_rest)
                gk = gk + (gh * (x_seq[t] - (v_prev - cfg.v_rest))).sum(dtype=torch.float64)
        grad_w = None
        if plif and ctx.needs_input_grad[1]:
            assert gk is not None and isinstance(k, Tensor)
            grad_w = (gk.to(w.dtype) * k * (1.0 - k)).reshape(w.shape)
        return (grad_x if ctx.needs_input_grad[0] else None), grad_w, None
