"""The neuron of each library, wrapped to one interface: a module mapping [T, B, ...] to spikes.

Every wrapper runs the same LIF: H = V + (X - V)/τ with τ = 2, V_th = 1, hard reset to 0, sigmoid
surrogate with α = 4 (where the library has it), reset gradient not detached. Where a library's
math differs it is said in NOTES, and the benchmark reports how many spikes agree with softspike's.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

TAU = 2.0
V_TH = 1.0
ALPHA = 4.0

NOTES = {
    "softspike": "fused multi-step (compiled kernel); spikes saved as bits in training",
    "plain": "per-step loop of tensor ops with a sigmoid-surrogate autograd.Function",
    "spikingjelly": "LIFNode step_mode='m' (its multi-step custom op on CPU)",
    "spikingjelly-s": "LIFNode step_mode='s' looped over T",
    "snntorch": "Leaky(beta=1-1/τ, reset 'zero', reset_delay=False) on X/τ; fires on H > θ (strict)",
    "norse": "LIFBoxCell (dt=1, 1/τ) looped over T; SuperSpike surrogate (no sigmoid); fires on H > θ",
}


def version(lib: str) -> str:
    dist = {"plain": "torch", "spikingjelly-s": "spikingjelly"}.get(lib, lib)
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


class _SG(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ALPHA * x)
        return g * ALPHA * s * (1 - s)


class PlainLIF(nn.Module):
    def forward(self, x_seq: Tensor) -> Tensor:
        v = torch.zeros_like(x_seq[0])
        out = []
        for x in x_seq:
            h = v + (x - v) / TAU
            s = _SG.apply(h - V_TH)
            v = h * (1 - s)
            out.append(s)
        return torch.stack(out)


class Looped(nn.Module):
    """A single-step neuron run over T; `init` gives its state, `step(x, state) -> (s, state)`."""

    def __init__(self, cell: nn.Module, init: Callable[[Tensor], Any], step: Callable[..., Any],
                 scale: float = 1.0) -> None:
        super().__init__()
        self.cell, self.init, self.step, self.scale = cell, init, step, scale

    def forward(self, x_seq: Tensor) -> Tensor:
        if self.scale != 1.0:
            x_seq = x_seq * self.scale
        state = self.init(x_seq[0])
        out = []
        for x in x_seq:
            s, state = self.step(x, state)
            out.append(s)
        return torch.stack(out)


class SJMulti(nn.Module):
    def __init__(self, node: nn.Module) -> None:
        super().__init__()
        self.node = node

    def forward(self, x_seq: Tensor) -> Tensor:
        self.node.reset()
        out: Tensor = self.node(x_seq)
        return out


def make_neuron(lib: str) -> nn.Module:
    """A fresh multi-step LIF layer of library `lib`."""
    if lib == "softspike":
        from softspike.core.neuron import Neuron
        from softspike.plugins.neurons import LIF
        from softspike.plugins.surrogates import Sigmoid

        return Neuron(LIF(TAU), V_TH, 0.0, Sigmoid(ALPHA), step_mode="m")
    if lib == "plain":
        return PlainLIF()
    if lib in ("spikingjelly", "spikingjelly-s"):
        from spikingjelly.activation_based import neuron as sjn
        from spikingjelly.activation_based import surrogate as sjs

        multi = lib == "spikingjelly"
        node = sjn.LIFNode(tau=TAU, v_threshold=V_TH, v_reset=0.0, surrogate_function=sjs.Sigmoid(alpha=ALPHA),
                           step_mode="m" if multi else "s")
        if multi:
            return SJMulti(node)

        def sj_init(x: Tensor) -> None:
            node.reset()

        return Looped(node, sj_init, lambda x, st: (node(x), st))
    if lib == "snntorch":
        import snntorch as snn
        from snntorch import surrogate as sns

        leaky = snn.Leaky(beta=1.0 - 1.0 / TAU, threshold=V_TH, spike_grad=sns.sigmoid(slope=ALPHA),
                          reset_mechanism="zero", reset_delay=False)
        return Looped(leaky, lambda x: torch.zeros_like(x), lambda x, mem: leaky(x, mem), scale=1.0 / TAU)
    if lib == "norse":
        from norse.torch import LIFBoxCell
        from norse.torch.functional.lif_box import LIFBoxParameters

        p = LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / TAU), v_leak=torch.as_tensor(0.0),
                             v_th=torch.as_tensor(V_TH), v_reset=torch.as_tensor(0.0), method="super",
                             alpha=torch.as_tensor(ALPHA))
        cell = LIFBoxCell(p, dt=1.0)
        return Looped(cell, lambda x: None, lambda x, st: cell(x, st))
    raise ValueError(lib)


def available(libs: list[str]) -> list[str]:
    mods = {"spikingjelly": "spikingjelly", "spikingjelly-s": "spikingjelly", "snntorch": "snntorch",
            "norse": "norse"}
    ok = []
    for lib in libs:
        try:
            if lib in mods:
                __import__(mods[lib])
            make_neuron(lib)
            ok.append(lib)
        except Exception as err:  # a peer that does not import is reported, not fatal
            print(f"skipping {lib}: {type(err).__name__}: {err}")
    return ok


def library_help(doc: str | None) -> None:
    """`--help` for the benchmark's library modules (imported by run_all.py): print the docstring, run nothing."""
    import argparse

    argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="Imported by run_all.py (`make bench`); there is nothing to run here.").parse_args()


if __name__ == "__main__":
    library_help(__doc__)
