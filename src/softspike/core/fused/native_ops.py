"""The compiled kernels for declared linear charges (CPU float32), as `torch.ops.softspike.lif_multistep`.

Saves only the input X (the kernel recomputes H from it in backward), so a training step holds no
per-step activation of its own beyond the tensor the previous layer produced.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from softspike.core.fused.ops import LifMultistep
from softspike.core.fused.torch_ops import Plan
from softspike.core.step import FireConfig

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
    """What the compiled kernel needs to know about a neuron (one place; see `supports`).

    The kernels' charge: 0 H = V + X, 1 divides by τ, 2 multiplies by k = sigmoid(w) (w a tensor argument).
    """
    decl = plan.charge
    dyn, tau = (2, 1.0) if decl.k_logit is not None else (1, float(decl.tau)) if decl.tau is not None else (0, 1.0)
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
