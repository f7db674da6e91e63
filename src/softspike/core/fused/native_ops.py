"""The compiled kernels for IF, LIF and parametric LIF (CPU float32), as `torch.ops.softspike.lif_multistep`.

Saves only the input X (the kernel recomputes H from it in backward), so a training step holds no
per-step activation of its own beyond the tensor the previous layer produced.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics
from softspike.core.fused.ops import LifMultistep
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


def kernel_args(dynamics: Dynamics, cfg: FireConfig) -> KernelArgs:
    """What the compiled kernel needs to know about a neuron (one place; see `supports`)."""
    gate: Any = cfg.surrogate  # a built-in gate (see `supports`): it has alpha, maybe width
    hard = cfg.v_reset is not None
    return KernelArgs(
        _DYN[type(dynamics)], float(getattr(dynamics, "tau", 1.0)) if isinstance(dynamics, LIF) else 1.0,
        cfg.v_rest, cfg.v_threshold, cfg.v_reset if cfg.v_reset is not None else 0.0, hard, cfg.detach_reset,
        _GATES[type(gate)], float(gate.alpha), float(getattr(gate, "width", 1.0)),
    )


def fused_native(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor, w: Tensor) -> Tensor:
    """Spikes [T, B, ...] from the compiled kernel (an operator torch.compile and torch.func see)."""
    out: Tensor = LifMultistep.apply(x_seq, w, *kernel_args(dynamics, cfg))
    return out
