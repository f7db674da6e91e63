"""Fused multi-step neurons: the time loop without a per-step graph, BPTT written by hand.

Three paths, tried in order by `backend="auto"`:

    native      compiled C++ kernels, the `torch.ops.softspike` operators (CPU, float32; IF, LIF,
                parametric LIF; built-in surrogates; reset gradient "surrogate" or detached). Saves
                only X; H is recomputed in backward.
    torch       tensor ops in a custom autograd Function (any device and dtype, every built-in
                dynamics including ALIF, any surrogate, every reset mode). Saves H per step.
    reference   `multistep_reference`, the per-step autograd loop (third-party dynamics).

Every path gives the reference's spikes bit for bit and its gradients within float32 rounding.
`backend_info()` says which paths are available here and why not.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics
from softspike.core.fused import native
from softspike.core.fused.compact import compact_saved_spikes
from softspike.core.fused.linear import SpikeLinear, spike_linear
from softspike.core.fused.pool import POOL
from softspike.core.fused.torch_ops import FusedTorch, Plan
from softspike.core.fused.torch_ops import supports as torch_supports
from softspike.core.neuron import FireConfig, multistep_reference

BACKENDS = ("auto", "native", "torch", "reference")

__all__ = [
    "BACKENDS", "POOL", "SpikeLinear", "backend_info", "compact_saved_spikes", "fused_multistep", "select_backend",
    "spike_linear",
]


def _param(dynamics: Dynamics, like: Tensor) -> Tensor:
    w = getattr(dynamics, "w", None)
    if isinstance(w, Tensor):
        return w
    return like.new_zeros(())


def select_backend(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor, backend: str = "auto") -> str:
    """The path `fused_multistep` takes for these arguments."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "reference" or not torch_supports(dynamics):
        return "reference"
    if backend in ("auto", "native"):
        from softspike.core.fused.native_ops import supports as native_supports

        why = native_supports(dynamics, cfg, x_seq)
        if why is None and native.available():
            return "native"
        if backend == "native":
            raise RuntimeError(f"backend='native' cannot run here: {why or native.status()[0]}")
    return "torch"


def fused_multistep(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor, backend: str = "auto") -> Tensor:
    """Spikes [T, B, ...] for input [T, B, ...] from rest, by the fastest path that applies."""
    return run(select_backend(dynamics, cfg, x_seq, backend), dynamics, cfg, x_seq)


def run(path: str, dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor) -> Tensor:
    if path == "reference":
        return multistep_reference(dynamics, cfg, x_seq)
    w = _param(dynamics, x_seq)
    if path == "native":
        from softspike.core.fused.native_ops import fused_native

        return fused_native(dynamics, cfg, x_seq, w)
    out = FusedTorch.apply(x_seq, w, Plan(dynamics, cfg))
    return out


def backend_info() -> dict[str, Any]:
    """Which fused paths this process can use, for `softspike plugins` and bug reports."""
    available = native.available()
    status, path = native.status()
    return {
        "default": "native" if available else "torch",
        "native": {"available": available, "status": status, "library": path,
                   "scope": "CPU float32; IF, LIF, ParametricLIF; built-in surrogates; "
                   "reset_grad 'surrogate' or detach_reset"},
        "torch": {"available": True, "scope": "any device/dtype; IF, LIF, ParametricLIF, ALIF; any surrogate"},
        "reference": {"available": True, "scope": "everything else (third-party dynamics)"},
        "threads": torch.get_num_threads(),
        "pool_cached_bytes": POOL.cached_bytes,
    }
