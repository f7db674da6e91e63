"""Fused multi-step neurons in plain tensor ops, for any dynamics that declares a `LinearCharge`.

Forward runs the declared step (the built-ins' own expressions, hence the reference's arithmetic
for any dynamics whose `charge` computes what it declares) without building a graph and saves H
for every step (with an adaptive threshold also θ; with a learnable k also X, which k's gradient
needs). Backward is BPTT written by hand from the declaration; with z = H - θ, σ' = surrogate.derivative(z):

    dV/dH = 1 - S (hard) | 1 (soft)            dV/dS = V_reset - H (hard) | -θ (soft), 0 if detached
    straight-through: S in V's gradient becomes σ = primitive(z), with dσ/dz = σ'
    dL/dz = (dL/dS + dL/dV·dV/dS)·σ',  dL/dH = dL/dV·dV/dH + dL/dz,  dL/dθ = -dL/dz (- dL/dV·S, soft)
    H = V + (X - (V - V_rest))·k:  dL/dX = dL/dH·k,  dL/dV(t-1) = dL/dH - dL/dX,
                                   dL/dk += dL/dH·(X - (V(t-1) - V_rest)),  k = sigmoid(w)
    adaptation θ = V_th + β·a(t-1), a(t) = ρ·a(t-1) + S:  dL/da(t-1) = ρ·dL/da(t) + β·dL/dθ

The Function is written in the `setup_context` style (forward takes no ctx), so torch.func's
transforms can run through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics, LinearCharge, State
from softspike.core.step import FireConfig, _reset, resting, step_parts
from softspike.core.surrogate import Surrogate


@dataclass(frozen=True)
class Plan:
    """What the fused functions need besides tensors: the dynamics, its declaration, the settings."""

    dynamics: Dynamics
    cfg: FireConfig
    charge: LinearCharge


def plan_for(dynamics: Dynamics, cfg: FireConfig) -> Plan | None:
    """The plan of a dynamics that declares a linear charge; None for every other dynamics."""
    decl = dynamics.linear_charge()
    return None if decl is None else Plan(dynamics, cfg, decl)


def k_logit(plan: Plan, like: Tensor) -> Tensor:
    """The learnable w of k = sigmoid(w) (an input of the Function, so autograd reaches it), else 0."""
    w = plan.charge.k_logit
    return w if w is not None else like.new_zeros(())


class _Declared(Dynamics):
    """The step a `LinearCharge` declares, with k = sigmoid(w) from the Function's own input `w`.

    The forward runs this, not the module's methods: under torch.func (functional_call, vmap of
    grad) the module's parameter is another level's tensor than the one the Function receives.
    The expressions are the built-ins' own, so the values are bit for bit theirs.
    """

    def __init__(self, decl: LinearCharge, w: Tensor) -> None:
        super().__init__()
        self.decl, self.k = decl, (torch.sigmoid(w) if decl.k_logit is not None else None)

    def initial_state(self, like: Tensor, v_rest: float) -> State:
        return {"a": torch.zeros_like(like)} if self.decl.adaptation is not None else {}

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v = state["v"]
        if self.k is not None:
            return v + (x - (v - v_rest)) * self.k, state
        if self.decl.tau is not None:
            return v + (x - (v - v_rest)) / self.decl.tau, state
        return v + x, state

    def threshold(self, v_threshold: float, state: State) -> Tensor | float:
        adapt = self.decl.adaptation
        return v_threshold if adapt is None else v_threshold + adapt.beta * state["a"]

    def after_fire(self, h: Tensor, spike: Tensor, state: State) -> State:
        adapt = self.decl.adaptation
        return state if adapt is None else {**state, "a": adapt.rho * state["a"] + spike}


def _hard(z: Tensor, gate: Surrogate) -> Tensor:
    return (z >= 0).to(z.dtype)


def _reset_value(h: Tensor, s: Tensor, z: Tensor, theta: Tensor | float, cfg: FireConfig) -> Tensor:
    """V after firing, with the reference's exact arithmetic (straight-through included)."""
    if cfg.reset_grad == "straight_through" and not cfg.detach_reset:
        soft = _reset(h, cfg.surrogate.primitive(z), theta, cfg.v_reset)
        hard = _reset(h, s, theta, cfg.v_reset)
        return soft + (hard - soft)
    return _reset(h, s, theta, cfg.v_reset)


class FusedTorch(torch.autograd.Function):
    """(X [T, ...], w, plan, save) -> (S, H, θ); `fused_torch` returns S only."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x_seq: Tensor, w: Tensor, plan: Plan, save: bool) -> tuple[Tensor, Tensor, Tensor]:
        dyn, cfg = _Declared(plan.charge, w), plan.cfg
        adapt = plan.charge.adaptation is not None
        spikes = torch.empty_like(x_seq)
        hs = torch.empty_like(x_seq) if save else x_seq.new_empty(0)
        thetas = torch.empty_like(x_seq) if save and adapt else x_seq.new_empty(0)
        state = resting(dyn, cfg, x_seq[0])
        for t in range(x_seq.shape[0]):
            h, theta, s, state = step_parts(dyn, cfg, x_seq[t], state, _hard)
            spikes[t] = s
            if save:
                hs[t] = h
                if adapt:
                    thetas[t] = theta
        return spikes, hs, thetas

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor, Tensor]) -> None:
        x_seq, w, plan, save = inputs
        _, hs, thetas = output
        ctx.mark_non_differentiable(hs, thetas)
        ctx.plan = plan
        if save:
            ctx.save_for_backward(hs, thetas, x_seq if plan.charge.k_logit is not None else None, w)

    @staticmethod
    def backward(ctx: Any, grad_s: Tensor, _gh: Tensor, _gt: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        hs, thetas, x_seq, w = ctx.saved_tensors
        plan: Plan = ctx.plan
        cfg, decl = plan.cfg, plan.charge
        gate = cfg.surrogate
        hard = cfg.v_reset is not None
        vr = cfg.v_reset if cfg.v_reset is not None else 0.0
        straight = cfg.reset_grad == "straight_through" and not cfg.detach_reset
        learnable = decl.k_logit is not None
        adapt = decl.adaptation
        k: Tensor | float = torch.sigmoid(w.detach()) if learnable else 1.0
        T = hs.shape[0]
        grad_x = torch.empty_like(hs)
        gv = torch.zeros_like(hs[0])
        ga = torch.zeros_like(hs[0]) if adapt is not None else None
        gk = torch.zeros((), dtype=torch.float64, device=hs.device) if learnable else None

        for t in range(T - 1, -1, -1):
            h = hs[t]
            theta: Tensor | float = thetas[t] if adapt is not None else cfg.v_threshold
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
            if ga is not None and adapt is not None:
                g_theta = -gz if g_theta is None else g_theta - gz
                ga = adapt.rho * ga + adapt.beta * g_theta
            if decl.tau is None and not learnable:  # H = V + X
                grad_x[t] = gh
                gv = gh
            else:
                gx = gh / decl.tau if decl.tau is not None else gh * k
                grad_x[t] = gx
                gv = gh - gx
            if gk is not None:
                if t > 0:
                    hp = hs[t - 1]
                    theta_p: Tensor | float = thetas[t - 1] if adapt is not None else cfg.v_threshold
                    zp = hp - theta_p
                    v_prev = _reset_value(hp, (zp >= 0).to(hp.dtype), zp, theta_p, cfg)
                else:
                    v_prev = torch.full_like(h, cfg.v_rest)
                gk = gk + (gh * (x_seq[t] - (v_prev - cfg.v_rest))).sum(dtype=torch.float64)
        grad_w = None
        if learnable and ctx.needs_input_grad[1]:
            assert gk is not None and isinstance(k, Tensor)
            grad_w = (gk.to(w.dtype) * k * (1.0 - k)).reshape(w.shape)
        return (grad_x if ctx.needs_input_grad[0] else None), grad_w, None, None


def fused_torch(plan: Plan, x_seq: Tensor) -> Tensor:
    """Spikes [T, ...] of a declared dynamics, BPTT by hand."""
    w = k_logit(plan, x_seq)
    save = torch.is_grad_enabled() and (x_seq.requires_grad or w.requires_grad)
    out: Tensor = FusedTorch.apply(x_seq, w, plan, save)[0]
    return out
