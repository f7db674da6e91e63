"""The contract every neuron dynamics obeys.

A dynamics is the charge equation H(t) = f(V(t-1), X(t)) of a spiking neuron, with optional extra
state variables beside V (an adaptation current, a recovery variable). The neuron around it fires
S = Θ(H - θ) and resets V; a dynamics may move the threshold θ with its state (adaptive neurons) and
update that state once the spikes are known.

Everything here is a pure function of tensors: the time loop calls it once per step, and no
registry, hook or schema is touched there.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
from torch import Tensor, nn

State = dict[str, Tensor]


class Dynamics(nn.Module, metaclass=abc.ABCMeta):
    """Base of every neuron dynamics (an `nn.Module`, so learnable parameters train with the net).

    Subclasses define `charge`; those with extra state list it in `state_names` and override
    `initial_state`, `threshold` and `update` as needed.
    """

    #: Names of the state variables kept beside V (V itself is always there).
    state_names: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def charge(self, v: Tensor, x: Tensor, state: State, v_rest: float) -> Tensor:
        """H = f(V, X): the membrane after integrating input `x` (V_rest is where it leaks to)."""

    def initial_state(self, like: Tensor) -> State:
        """The extra state at rest, shaped like one step of input."""
        return {name: torch.zeros_like(like) for name in self.state_names}

    def threshold(self, v_threshold: float, state: State) -> Tensor | float:
        """The firing threshold θ for this step (fixed unless the dynamics adapts it)."""
        return v_threshold

    def update(self, state: State, spike: Tensor) -> State:
        """The extra state after this step's spikes."""
        return state
