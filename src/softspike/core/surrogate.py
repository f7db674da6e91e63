"""The spike op and the surrogate-gate base class.

Forward, a neuron fires with the Heaviside step Θ(x) (Θ(0) = 1); backward, Θ' is replaced by the
derivative σ'(x) of a smooth gate σ, the *surrogate*. A surrogate is defined by two functions only:

    primitive(x)   σ(x), a smooth step from 0 to 1
    derivative(x)  σ'(x), what the backward pass uses

`softspike.testing` checks that `derivative` is the autograd derivative of `primitive`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


class _Spike(torch.autograd.Function):
    """Heaviside forward, surrogate derivative backward.

    Written in the `setup_context` style (forward takes no ctx) with a generated vmap rule, so
    `torch.func.grad`, `vjp` and `vmap` go through it, and torch.compile traces it into its graph.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, gate: Surrogate) -> Tensor:
        return (x >= 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Surrogate], output: Tensor) -> None:
        x, gate = inputs
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(x)
        ctx.gate = gate

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None]:
        (x,) = ctx.saved_tensors
        return grad * ctx.gate.derivative(x), None


def spike(x: Tensor, gate: Surrogate) -> Tensor:
    """S = Θ(x) forward (exactly 0 or 1), ∂S/∂x = gate.derivative(x) backward."""
    return _Spike.apply(x, gate)


@dataclass(frozen=True)
class GateKernel:
    """A gate's declaration: "my σ and σ' are the compiled kernel `name` at these parameters".

    Names the kernels know (`softspike.kernels.scan_native.GATES`): sigmoid, atan, piecewise_quadratic,
    fast_sigmoid, erf, triangle (uses `width`), straight_through; `softspike info` lists the backends
    that run them.
    """

    name: str
    alpha: float
    width: float = 1.0


class Surrogate(nn.Module, metaclass=abc.ABCMeta):
    """Base of every surrogate gate. Subclass it and define `primitive` and `derivative`.

    Calling a surrogate on `x = H - V_th` returns spikes: `Sigmoid()(x)` is `spike(x, Sigmoid())`.

    >>> import torch
    >>> class Gauss(Surrogate):
    ...     def primitive(self, x):
    ...         return 0.5 * (1 + torch.erf(x))
    ...     def derivative(self, x):
    ...         return torch.exp(-x * x) / 3.141592653589793 ** 0.5
    >>> Gauss()(torch.tensor([-0.5, 0.0, 0.5]))
    tensor([0., 1., 1.])
    """

    #: Points where `primitive` has a kink; the conformance check does not compare there.
    kinks: tuple[float, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that redefines the gate does not inherit its parent's compiled kernel.
        if "kernel" not in cls.__dict__ and ("primitive" in cls.__dict__ or "derivative" in cls.__dict__):
            cls.kernel = Surrogate.kernel  # type: ignore[method-assign]

    def kernel(self) -> GateKernel | None:
        """Declare the compiled kernel this gate equals; None (the default): tensor ops evaluate it."""
        return None

    @abc.abstractmethod
    def primitive(self, x: Tensor) -> Tensor:
        """σ(x): the smooth gate that Θ stands in for."""

    @abc.abstractmethod
    def derivative(self, x: Tensor) -> Tensor:
        """σ'(x): used by the backward pass in place of Θ'."""

    def forward(self, x: Tensor) -> Tensor:
        return spike(x, self)

    def kink_points(self) -> tuple[float, ...]:
        """Where `primitive` is not differentiable, for this instance's parameters."""
        return self.kinks
