"""Helpers over whole networks: reset every neuron, switch step modes."""

from __future__ import annotations

from torch import nn

from softspike.core.encoder import Encoder
from softspike.core.neuron import Neuron, StepMode


def reset(net: nn.Module) -> None:
    """Reset every neuron and encoder in a module tree to rest (call between samples)."""
    for m in net.modules():
        if isinstance(m, (Neuron, Encoder)):
            m.reset()


def detach(net: nn.Module) -> None:
    """Cut the kept state of every neuron from the graph (truncated BPTT in single-step mode)."""
    for m in net.modules():
        if isinstance(m, Neuron):
            m.detach()


def set_step_mode(net: nn.Module, step_mode: StepMode) -> None:
    """Put every neuron in a module tree in single-step ('s') or multi-step ('m') mode."""
    for m in net.modules():
        if isinstance(m, Neuron):
            m.step_mode = step_mode
