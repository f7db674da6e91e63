"""Fused multi-step neurons: the time loop without a per-step autograd graph.

A path is chosen by what the dynamics and the gate *declare* (never by their class), so a subclass
or a third-party neuron takes the same path as a built-in with the same declaration. `backend="auto"`
tries, in order:

    native      compiled C++ kernels as `torch.ops.softspike` operators: a declared `LinearCharge`
                (IF, LIF, parametric LIF or anyone's equal) without adaptation, a gate that declares a
                kernel (`Surrogate.kernel()`), CPU float32, reset gradient "surrogate" or detached.
                Saves only X; backward recomputes H.
    torch       tensor ops in a custom autograd Function: any declared `LinearCharge` (adaptive
                threshold included), any gate, any reset mode, any device and dtype. Saves H per step.
    compiled    any other dynamics: one step (charge, fire, reset) compiled by torch.compile into one
                fused kernel forward and backward, Python looping over T (`core.fused.generic`);
                for layers of at least `generic.MIN_NUMEL` neurons, where a compiler works.
    reference   `multistep_reference`, the per-step autograd loop.

Native and torch give the reference's spikes bit for bit and its gradients within float32 rounding;
compiled gives the reference's spikes up to float rounding of the fused arithmetic.
`backend_info()` says which paths are available here and why not.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics
from softspike.core.fused import generic, native
from softspike.core.fused.compact import compact_saved_spikes
from softspike.core.fused.linear import SpikeLinear, spike_linear
from softspike.core.fused.pool import POOL
from softspike.core.fused.torch_ops import fused_torch, k_logit, plan_for
from softspike.core.neuron import FireConfig, multistep_reference

BACKENDS = ("auto", "native", "torch", "compiled", "reference")

__all__ = [
    "BACKENDS", "POOL", "SpikeLinear", "backend_info", "compact_saved_spikes", "fused_multistep", "select_backend",
    "spike_linear",
]


def select_backend(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor, backend: str = "auto") -> str:
    """The path `fused_multistep` takes for these arguments."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "reference":
        return "reference"
    plan = plan_for(dynamics, cfg)
    if plan is None or backend == "compiled":
        if backend in ("torch", "native"):
            raise RuntimeError(
                f"backend={backend!r} cannot run {type(dynamics).__name__}: it declares no linear charge "
                "(Dynamics.linear_charge); use backend='compiled' or 'auto'"
            )
        why = generic.usable(x_seq, forced=backend == "compiled")
        if why is None:
            return "compiled"
        if backend == "compiled":
            raise RuntimeError(f"backend='compiled' cannot run here: {why}")
        return "reference"
    if backend in ("auto", "native"):
        from softspike.core.fused.native_ops import supports as native_supports

        why = native_supports(plan, cfg, x_seq)
        if why is None and native.available():
            return "native"
        if backend == "native":
            raise RuntimeError(f"backend='native' cannot run here: {why or native.status()[0]}")
    return "torch"


def fused_multistep(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor, backend: str = "auto") -> Tensor:
    """Spikes [T, B, ...] for input [T, B, ...] from rest, by the fastest path that applies."""
    return execute(dynamics, cfg, x_seq, backend)[1]


def execute(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor, backend: str = "auto") -> tuple[str, Tensor]:
    """(the path that ran, spikes): the compiled path falls back to the reference loop where it fails."""
    path = select_backend(dynamics, cfg, x_seq, backend)
    if path == "compiled":
        out = generic.compiled_multistep(dynamics, cfg, x_seq)
        if out is None:
            return "reference", multistep_reference(dynamics, cfg, x_seq)
        return path, out
    return path, run(path, dynamics, cfg, x_seq)


def run(path: str, dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor) -> Tensor:
    """Spikes by the given path (see `select_backend`)."""
    if path == "compiled":
        out = generic.compiled_multistep(dynamics, cfg, x_seq)
        return out if out is not None else multistep_reference(dynamics, cfg, x_seq)
    plan = plan_for(dynamics, cfg) if path != "reference" else None
    if plan is None:
        return multistep_reference(dynamics, cfg, x_seq)
    if path == "native":
        from softspike.core.fused.native_ops import fused_native

        return fused_native(plan, x_seq, k_logit(plan, x_seq))
    return fused_torch(plan, x_seq)


def backend_info() -> dict[str, Any]:
    """Which fused paths this process can use, for `softspike plugins` and bug reports."""
    from softspike.core.fused.native_ops import GATES

    available = native.available()
    status, path = native.status()
    compiled_ok, compiled_status = generic.status()
    return {
        "default": "native" if available else "torch",
        "native": {"available": available, "status": status, "library": path,
                   "scope": "CPU float32; dynamics declaring a LinearCharge without adaptation; gates declaring "
                   "a kernel (" + ", ".join(GATES) + "); reset_grad 'surrogate' or detach_reset"},
        "torch": {"available": True, "scope": "any device/dtype; dynamics declaring a LinearCharge; any surrogate"},
        "compiled": {"available": compiled_ok, "status": compiled_status,
                     "scope": f"other dynamics, layers of >= {generic.MIN_NUMEL} neurons (torch.compile of a step)"},
        "reference": {"available": True, "scope": "everything else (small layers, no compiler)"},
        "threads": torch.get_num_threads(),
        "pool_cached_bytes": POOL.cached_bytes,
    }
