"""`make bench` cases for third-party neurons: a plugin LIF against the built-in, Izhikevich's fast path.

    python benchmarks/run_all.py --only plugins

1. LIF layer alone (the LIF case's shapes): the built-in `lif` against `PluginLIF` below, written as a
   third party would (its own class, nothing of softspike's LIF reused) and declaring its linear
   charge; target: within 1.5x of the built-in.
2. Izhikevich (examples/softspike-izhikevich), T=50, B=128, N=980, forward + backward: the generic
   compiled path against the reference per-step autograd loop; target: at least 5x faster.

Memory per time step: the heap held after forward (what autograd keeps for backward, plus the
output), divided by T; the first call's time (compile included) is reported apart.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import peers
import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics, LinearCharge, State
from softspike.core.neuron import Neuron

ROOT = Path(__file__).resolve().parent.parent


class PluginLIF(Dynamics):
    """A third-party LIF: H = V + (X - (V - V_rest)) / τ, declared so that the fused kernels run it."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = tau

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v = state["v"]
        return v + (x - (v - v_rest)) / self.tau, state

    def linear_charge(self) -> LinearCharge:
        return LinearCharge(tau=self.tau)


def izhikevich() -> Dynamics:
    try:
        from softspike_izhikevich import Izhikevich
    except ImportError:  # not pip-installed: use the example's source tree
        sys.path.insert(0, str(ROOT / "examples" / "softspike-izhikevich" / "src"))
        from softspike_izhikevich import Izhikevich
    return Izhikevich()  # type: ignore[no-any-return]


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _fwd_bwd(neuron: Neuron, x: Tensor, g: Tensor) -> Callable[[], None]:
    def call() -> None:
        neuron(x).backward(g)
        x.grad = None

    return call


def _held_per_step(neuron: Neuron, x: Tensor, heap: Callable[[], int], clear: Callable[[], None]) -> float:
    clear()
    before = heap()
    s = neuron(x)
    held = heap() - before
    s.sum().backward()
    x.grad = None
    del s
    clear()
    return held / x.shape[0]


def _case(neurons: dict[str, Neuron], x: Tensor, rounds: int, heap: Callable[[], int],
          clear: Callable[[], None]) -> dict[str, dict[str, Any]]:
    g = torch.randn_like(x)
    calls = {k: _fwd_bwd(n, x, g) for k, n in neurons.items()}
    first = {k: _timed(c) for k, c in calls.items()}  # compiles where a path compiles
    times: dict[str, list[float]] = {k: [] for k in neurons}
    for _ in range(rounds):
        for k, c in calls.items():
            times[k].append(_timed(c))
    with torch.no_grad():
        spikes = {k: n(x) for k, n in neurons.items()}
    ref = next(iter(spikes.values()))
    return {k: {"s": statistics.median(times[k]), "first_s": first[k], "path": n.backend_used,
                "per_step": _held_per_step(n, x, heap, clear), "rate": float(spikes[k].mean()),
                "agree": float((spikes[k] == ref).float().mean())}
            for k, n in neurons.items()}


def run(rounds: int, quick: bool, heap: Callable[[], int], clear: Callable[[], None],
        out: Callable[[str], None]) -> dict[str, float]:
    """Both cases; writes markdown lines through `out`; returns the two ratios."""
    torch.manual_seed(5)
    T, B, N = (10, 64, 980) if quick else (50, 256, 980)
    x = (torch.randn(T, B, N) * 0.6 + 0.6).requires_grad_()
    lif = _case({"built-in lif": Neuron(_builtin_lif(), step_mode="m"),
                 "plugin LIF": Neuron(PluginLIF(peers.TAU), step_mode="m")}, x, rounds, heap, clear)
    lif_ratio = lif["plugin LIF"]["s"] / lif["built-in lif"]["s"]
    _table(out, f"LIF layer alone as a plugin, forward + backward, X [T={T}, B={B}, N={N}] float32", lif)
    out(f"Plugin LIF / built-in: **{lif_ratio:.2f}x** the time (target: at most 1.5x).")
    out("")

    T, B, N = (10, 32, 980) if quick else (50, 128, 980)
    x = (torch.rand(T, B, N) + 0.2).requires_grad_()  # I = gain·X up to 12: regular spiking
    izh = _case({"reference loop": Neuron(izhikevich(), step_mode="m", backend="reference"),
                 "generic fast path": Neuron(izhikevich(), step_mode="m")}, x, rounds, heap, clear)
    izh_ratio = izh["reference loop"]["s"] / izh["generic fast path"]["s"]
    _table(out, f"Izhikevich plugin (two state variables), forward + backward, X [T={T}, B={B}, N={N}]", izh)
    out(f"Generic fast path against the reference loop: **{izh_ratio:.2f}x** faster (target: at least 5x).")
    out("")
    return {"plugin_lif_ratio": lif_ratio, "izhikevich_speedup": izh_ratio}


def _builtin_lif() -> Dynamics:
    from softspike.plugins.neurons import LIF

    return LIF(peers.TAU)


def _table(out: Callable[[str], None], title: str, res: dict[str, dict[str, Any]]) -> None:
    out(f"### {title}")
    out("")
    out("| neuron | path | ms per call | first call (s) | memory per time step (KB) | spike rate | spikes equal |")
    out("|---|---|---:|---:|---:|---:|---:|")
    for k, r in res.items():
        out(f"| {k} | {r['path']} | {r['s'] * 1e3:.1f} | {r['first_s']:.1f} | {r['per_step'] / 1024:.0f} | "
            f"{r['rate']:.3f} | {r['agree'] * 100:.3f}% |")
    out("")


if __name__ == "__main__":
    peers.library_help(__doc__)
