"""Built-in surrogate gates. Each gives the smooth step σ (`primitive`) and σ' (`derivative`)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field, create_model
from torch import Tensor

from softspike.core.params import FLOAT32_TINY, Params, validate_params
from softspike.core.surrogate import GateKernel, Surrogate


def _alpha_params(gate: str, default: float, doc: str) -> type[Params]:
    """A params model with one sharpness parameter alpha > 0."""
    doc += (" At least 1.2e-38 (float32's smallest normal number): a smaller α rounds to 0 in float32 and the "
            "gate gives no gradient.")
    return create_model(f"{gate}Params", __base__=Params,
                        alpha=(float, Field(default, ge=FLOAT32_TINY, description=doc)))


class _AlphaGate(Surrogate):
    """A gate with one sharpness parameter."""

    Params: ClassVar[type[Params]]

    def __init__(self, alpha: float | None = None) -> None:
        super().__init__()
        given = {} if alpha is None else {"alpha": alpha}
        self.alpha: float = validate_params(self.Params, type(self).__name__, given).alpha  # type: ignore[attr-defined]

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Sigmoid(_AlphaGate):
    """σ(x) = 1 / (1 + e^(-αx)); σ'(x) = α·σ(x)·(1 - σ(x)). The default gate (α = 4)."""

    Params = _alpha_params("Sigmoid", 4.0, "Sharpness α (> 0); σ'(0) = α/4.")

    def primitive(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.alpha * x)

    def derivative(self, x: Tensor) -> Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1.0 - s)

    def kernel(self) -> GateKernel:
        return GateKernel("sigmoid", self.alpha)


class ATan(_AlphaGate):
    """σ(x) = arctan(π/2·αx)/π + 1/2; σ'(x) = (α/2) / (1 + (π/2·αx)²)."""

    Params = _alpha_params("ATan", 2.0, "Sharpness α (> 0); σ'(0) = α/2.")

    def primitive(self, x: Tensor) -> Tensor:
        return torch.atan(math.pi / 2 * self.alpha * x) / math.pi + 0.5

    def derivative(self, x: Tensor) -> Tensor:
        return (self.alpha / 2) / (1.0 + (math.pi / 2 * self.alpha * x) ** 2)

    def kernel(self) -> GateKernel:
        return GateKernel("atan", self.alpha)


class PiecewiseQuadratic(_AlphaGate):
    """σ piecewise quadratic on |x| <= 1/α (0 below, 1 above); σ'(x) = max(0, α - α²|x|), a triangle."""

    Params = _alpha_params("PiecewiseQuadratic", 1.0, "Sharpness α (> 0); σ' is non-zero on |x| < 1/α.")

    def primitive(self, x: Tensor) -> Tensor:
        a = self.alpha
        mid = -0.5 * a * a * x * x.abs() + a * x + 0.5
        return torch.where(x > 1 / a, torch.ones_like(x), torch.where(x < -1 / a, torch.zeros_like(x), mid))

    def derivative(self, x: Tensor) -> Tensor:
        return (self.alpha - self.alpha**2 * x.abs()).clamp_min(0.0)

    def kernel(self) -> GateKernel:
        return GateKernel("piecewise_quadratic", self.alpha)


class FastSigmoid(_AlphaGate):
    """Fast sigmoid (softsign): σ(x) = 1/2 + αx / (2(1 + α|x|)); σ'(x) = α / (2(1 + α|x|)²).

    Equals SpikingJelly's `SoftSign(alpha)` exactly. snnTorch's `fast_sigmoid(slope=k)` and Norse's
    SuperSpike use 1 / (1 + k|x|)², the same shape at another scale: this gate with α = k, times 2/k.
    """

    Params = _alpha_params("FastSigmoid", 25.0, "Sharpness α (> 0); σ'(0) = α/2.")

    def primitive(self, x: Tensor) -> Tensor:
        return 0.5 + self.alpha * x / (2.0 * (1.0 + self.alpha * x.abs()))

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha / (2.0 * (1.0 + self.alpha * x.abs()) ** 2)

    def kernel(self) -> GateKernel:
        return GateKernel("fast_sigmoid", self.alpha)


class Erf(_AlphaGate):
    """σ(x) = (1 + erf(αx)) / 2, the Gaussian CDF; σ'(x) = α/√π · e^(-α²x²)."""

    Params = _alpha_params("Erf", 2.0, "Sharpness α (> 0); σ'(0) = α/√π.")

    def primitive(self, x: Tensor) -> Tensor:
        return 0.5 * (1.0 + torch.erf(self.alpha * x))

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha / math.sqrt(math.pi) * torch.exp(-((self.alpha * x) ** 2))

    def kernel(self) -> GateKernel:
        return GateKernel("erf", self.alpha)


class TriangleParams(Params):
    alpha: float = Field(1.0, ge=FLOAT32_TINY)
    """Peak of σ' at x = 0 (at least 1.2e-38, float32's smallest normal number: a smaller α rounds to 0
    and the gate gives no gradient)."""
    width: float = Field(1.0, ge=FLOAT32_TINY)
    """Half-width w of the triangle's support; with α·w = 1, σ rises from 0 to 1. At least 1.2e-38
    (float32's smallest normal number): a smaller w rounds to 0 and σ'(0) = α·(1 - 0/0) is NaN."""


class Triangle(Surrogate):
    """σ'(x) = α·max(0, 1 - |x|/w): a triangle of height α and half-width w; σ its integral.

    Equals Norse's `triangle` surrogate (β·relu(1 - α'|x|)) with its β = α and α' = 1/w, and with
    w = 1 Norse's "tent" threshold. (snnTorch's `triangular` is not this: its gradient is ±threshold, a
    step.) With α·w = 1 it is `piecewise_quadratic` with alpha = 1/w.
    """

    Params: ClassVar[type[TriangleParams]] = TriangleParams

    def __init__(self, alpha: float = 1.0, width: float = 1.0) -> None:
        super().__init__()
        p = validate_params(TriangleParams, "Triangle", {"alpha": alpha, "width": width})
        self.alpha, self.width = p.alpha, p.width

    def primitive(self, x: Tensor) -> Tensor:
        a, w = self.alpha, self.width
        mid = a * (x + w / 2 - x * x.abs() / (2 * w))
        return torch.where(x > w, torch.full_like(x, a * w), torch.where(x < -w, torch.zeros_like(x), mid))

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha * (1.0 - x.abs() / self.width).clamp_min(0.0)

    def kernel(self) -> GateKernel:
        return GateKernel("triangle", self.alpha, self.width)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, width={self.width}"


class StraightThrough(_AlphaGate):
    """The clipped straight-through estimator: σ(x) = clamp(αx + 1/2, 0, 1); σ' = α on |x| <= 1/(2α)."""

    Params = _alpha_params("StraightThrough", 1.0, "Slope α (> 0) of the gradient window |x| <= 1/(2α).")

    def primitive(self, x: Tensor) -> Tensor:
        return (self.alpha * x + 0.5).clamp(0.0, 1.0)

    def derivative(self, x: Tensor) -> Tensor:
        return self.alpha * (x.abs() <= 0.5 / self.alpha).to(x.dtype)

    def kernel(self) -> GateKernel:
        return GateKernel("straight_through", self.alpha)

    def kink_points(self) -> tuple[float, ...]:
        return (-0.5 / self.alpha, 0.5 / self.alpha)
