"""The layer types of the spec language, each one class that knows its whole behaviour.

A layer type is a pydantic model (its fields are the JSON keys) with four methods:

    out_shape(in_shape, context)        the shape of one sample after it, or ShapeError(reason)
    parameter_count(in_shape, context)  its learnable parameters, by arithmetic (no tensor built)
    activation_size(in_shape, out_shape) elements per sample and time step it keeps for backward
    build(in_shape, context)            its module, which runs on [T, B, *in_shape]

The shape pass (models/shapes.py), the memory check (models/limits.py) and the builder
(models/builder.py) only call these, so adding a layer type is one class here, or in a plugin:
`registry.layers.add("my_layer", MyLayer)` with `class MyLayer(LayerSpec)`. The language adds the
`type` tag (`{"type": "my_layer", ...}`) and the strict checks every spec part gets.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field
from torch import nn

from softspike.core.backends import AUTO
from softspike.core.neuron import DEFAULT_SURROGATE, NEURON_DEFAULTS, assemble
from softspike.core.params import FLOAT32_TINY
from softspike.core.registry import Catalog, Registry
from softspike.kernels.spike_conv import ChannelsLastConv2d, SpikeConv2d
from softspike.kernels.spike_linear import SpikeLinear
from softspike.kernels.spike_pool import SpikeMaxPool2d
from softspike.layers import MultiStep
from softspike.models.base import MAX_SIZE, Size, SpecModel
from softspike.models.network import Residual as ResidualModule

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """Raised by a layer's `out_shape` when it cannot take its input; the shape pass adds the path."""


def numel(shape: Sequence[int]) -> int:
    """Elements of one sample of this shape (Python integers: no overflow, whatever the sizes)."""
    return math.prod(shape)


def show(shape: Sequence[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


@dataclass(frozen=True)
class ShapeContext:
    """What `out_shape` and `parameter_count` may use: the layer's path, the registry, and the
    shape pass itself for layers that hold layers (`context.sequence(self.layers, in_shape)`)."""

    path: str
    registry: Registry
    _sequence: Callable[[Sequence[Any], Shape, str], Shape]

    def sequence(self, layers: Sequence[Any], in_shape: Shape, field: str = "layers") -> Shape:
        """Run the shape pass over nested layers (found under `field`); their output shape."""
        return self._sequence(layers, in_shape, field)


@dataclass(frozen=True)
class BuildContext:
    """What `build` may use: the path, the registry, whether the input is spikes (0/1 values), and
    the builder for nested layers (`context.sequence("layers")` -> nn.Sequential)."""

    path: str
    registry: Registry
    spikes_in: bool
    _sequence: Callable[[str], nn.Sequential]

    def sequence(self, field: str = "layers") -> nn.Sequential:
        """The nested layers under `field`, built (each on [T, B, ...]) into an nn.Sequential."""
        return self._sequence(field)


def part_params(part: Any) -> dict[str, Any]:
    """The parameters of a tagged spec part (a neuron, surrogate or encoder), without its tag."""
    return {k: getattr(part, k) for k in type(part).model_fields if k != "type"}


def instantiate(catalog: Catalog[Any], part: Any) -> Any:
    """The plugin object a spec part describes. The spec's models already validated the part, so it
    is handed over as the plugin's own params object, not validated again (`from_params`; a factory
    without it gets the values as keywords)."""
    entry = catalog.get(part.type)
    valid = entry.params.model_construct(**part_params(part))
    from_params = getattr(entry.factory, "from_params", None)
    return from_params(valid) if callable(from_params) else entry.factory(**valid.model_dump())


class LayerSpec(SpecModel):
    """Base of every layer type. Subclasses define `out_shape` and `build`; the size methods default
    to no parameters and an output kept for backward."""

    type: str = Field(default="", description="The layer type (its registered name).")

    # Abstract (pydantic's model metaclass is an ABCMeta): the layer catalog refuses a class that
    # leaves either undefined, at registration rather than when a spec first uses it.
    @abc.abstractmethod
    def out_shape(self, in_shape: Shape, context: ShapeContext) -> Shape:
        """The shape of one sample's time step after this layer."""

    @abc.abstractmethod
    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        """The module of this layer (multi-step: it takes [T, B, *in_shape])."""

    def parameter_count(self, in_shape: Shape, context: ShapeContext) -> int:
        """Learnable parameters of this layer alone (not of layers nested in it)."""
        return 0

    def activation_size(self, in_shape: Shape, out_shape: Shape) -> int:
        """Elements per sample and time step this layer keeps (its output, by default)."""
        return numel(out_shape)

    def spikes_out(self, spikes_in: bool) -> bool:
        """Whether the output is spikes (0/1), given whether the input is: lets the next linear
        layer take the sparse spike kernel. Default: no (the safe, dense choice)."""
        return False

    @classmethod
    def language_fields(cls, parts: LanguageParts) -> dict[str, Any]:
        """Field annotations that depend on the installed plugins (see NeuronLayer, Residual)."""
        return {}


@dataclass(frozen=True)
class LanguageParts:
    """The unions of the language a layer's fields may refer to (`layer` is a forward reference,
    resolved once every layer type is known)."""

    neuron: Any
    surrogate: Any
    layer: Any
    #: "auto" or a registered backend's name (a Literal of them).
    backend: Any = str


def need_flat(layer: LayerSpec, shape: Shape) -> int:
    if len(shape) != 1:
        raise ShapeError(f"{layer.type} needs a flat input [features], got {show(shape)}; "
                         "add {\"type\": \"flatten\"} before it")
    return shape[0]


def need_image(layer: LayerSpec, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ShapeError(f"{layer.type} needs an image input [channels, height, width], but the input here is "
                         f"{show(shape)}" + (" (flattened earlier?)" if len(shape) == 1 else ""))
    return shape


def window(size: int, kernel: int, stride: int, padding: int, shape: Shape) -> int:
    """Output length of a sliding window: (size + 2·padding − kernel) // stride + 1."""
    if size + 2 * padding < kernel:
        raise ShapeError(f"kernel_size {kernel} is larger than the input {show(shape)} (plus padding {padding})")
    return (size + 2 * padding - kernel) // stride + 1


class Linear(LayerSpec):
    """Fully connected layer, Y = X·Wᵀ + b; its input size is the flat feature count before it."""

    out_features: Size
    """Output features (>= 1)."""
    bias: bool = True

    def out_shape(self, in_shape: Shape, context: ShapeContext) -> Shape:
        need_flat(self, in_shape)
        return (self.out_features,)

    def parameter_count(self, in_shape: Shape, context: ShapeContext) -> int:
        return in_shape[0] * self.out_features + (self.out_features if self.bias else 0)

    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        # Fed by spikes: same parameters and results (to rounding), sums only the inputs that fired.
        cls = SpikeLinear if context.spikes_in else nn.Linear
        return MultiStep(cls(in_shape[0], self.out_features, bias=self.bias))


class Conv2d(LayerSpec):
    """2-D convolution with square kernels; its input channels come from the shape before it.
    H' = (H + 2·padding − kernel_size) // stride + 1, and the same for W."""

    out_channels: Size
    """Output channels (>= 1)."""
    kernel_size: Size
    stride: Size = 1
    padding: int = Field(default=0, ge=0, le=MAX_SIZE)
    bias: bool = True

    def out_shape(self, in_shape: Shape, context: ShapeContext) -> Shape:
        _, h, w = need_image(self, in_shape)
        k, s, p = self.kernel_size, self.stride, self.padding
        return (self.out_channels, window(h, k, s, p, in_shape), window(w, k, s, p, in_shape))

    def parameter_count(self, in_shape: Shape, context: ShapeContext) -> int:
        return self.out_channels * in_shape[0] * self.kernel_size**2 + (self.out_channels if self.bias else 0)

    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        # Fed by spikes: same parameters and results (to rounding), sums only the inputs that fired.
        # Else dense, writing channels-last like the spike convs (no layout copies between them).
        cls = SpikeConv2d if context.spikes_in else ChannelsLastConv2d
        return MultiStep(cls(in_shape[0], self.out_channels, self.kernel_size, self.stride, self.padding,
                             bias=self.bias))


class BatchNorm2d(LayerSpec):
    """Batch normalisation over channels of a [C, H, W] tensor (statistics over time and batch)."""

    eps: float = Field(default=1e-5, ge=FLOAT32_TINY)
    """Added to the variance before its square root (at least 1.2e-38, float32's smallest normal number:
    a smaller eps rounds to 0, and a channel of constant value gives 0/0 = NaN)."""
    momentum: float = Field(default=0.1, ge=FLOAT32_TINY, le=1)
    """Weight of each batch in the running statistics, in [1.2e-38, 1] (a smaller one rounds to 0 in
    float32 and the running statistics would never move)."""

    def out_shape(self, in_shape: Shape, context: ShapeContext) -> Shape:
        return need_image(self, in_shape)

    def parameter_count(self, in_shape: Shape, context: ShapeContext) -> int:
        return 2 * in_shape[0]  # weight and bias; the running statistics are buffers

    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        return MultiStep(nn.BatchNorm2d(in_shape[0], eps=self.eps, momentum=self.momentum))


class _Pool(LayerSpec):
    kernel_size: Size = 2
    stride: Size | None = None
    padding: int = Field(default=0, ge=0, le=MAX_SIZE)

    def out_shape(self, in_shape: Shape, context: ShapeContext) -> Shape:
        c, h, w = need_image(self, in_shape)
        k, p = self.kernel_size, self.padding
        s = self.stride or k
        if p > k // 2:
            raise ShapeError(f"padding {p} must be at most half of kernel_size {k}")
        return (c, window(h, k, s, p, in_shape), window(w, k, s, p, in_shape))


class MaxPool2d(_Pool):
    """Max pooling over square windows; stride defaults to the window size."""

    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        # nn.MaxPool2d's results bit for bit, one byte per output kept for backward instead of an int64 index.
        return MultiStep(SpikeMaxPool2d(self.kernel_size, self.stride, self.padding))

    def spikes_out(self, spikes_in: bool) -> bool:
        return spikes_in  # the max of 0/1 values is 0/1


class AvgPool2d(_Pool):
    """Average pooling over square windows; stride defaults to the window size."""

    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        return MultiStep(nn.AvgPool2d(self.kernel_size, self.stride, self.padding))


class Flatten(LayerSpec):
    """Flatten [C, H, W] to [C·H·W] features."""

    def out_shape(self, in_shape: Shape, context: ShapeContext) -> Shape:
        return (numel(in_shape),)

    def activation_size(self, in_shape: Shape, out_shape: Shape) -> int:
        return 0  # a view of its input

    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        return MultiStep(nn.Flatten())

    def spikes_out(self, spikes_in: bool) -> bool:
        return spikes_in


class Dropout(LayerSpec):
    """Dropout with probability p (a fresh mask at every time step; kept values scaled by 1/(1−p))."""

    p: float = Field(default=0.5, ge=0, lt=1)
    """Probability of zeroing an element, in [0, 1)."""

    def out_shape(self, in_shape: Shape, context: ShapeContext) -> Shape:
        return in_shape

    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        return MultiStep(nn.Dropout(self.p))


class Residual(LayerSpec):
    """A list of layers whose output is added to its input, y = x + layers(x) (shapes must agree)."""

    layers: list[Any] = Field(min_length=1, description="The block's layers.")

    @classmethod
    def language_fields(cls, parts: LanguageParts) -> dict[str, Any]:
        return {"layers": list[parts.layer]}  # type: ignore[name-defined]

    def out_shape(self, in_shape: Shape, context: ShapeContext) -> Shape:
        inner = context.sequence(self.layers, in_shape)
        if inner != in_shape:
            raise ShapeError(f"a residual block must keep its input shape {show(in_shape)}, but its layers give "
                             f"{show(inner)}")
        return in_shape

    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        return ResidualModule(context.sequence("layers"))


class NeuronLayer(LayerSpec):
    """Spiking neurons: dynamics, threshold, reset and surrogate gate, run over all T steps."""

    neuron: Any = Field(description="The dynamics: a registered neuron and its parameters.")
    surrogate: Any = Field(default=None, description=f"The surrogate gate (default: {DEFAULT_SURROGATE}).")
    v_threshold: float = Field(default=NEURON_DEFAULTS["v_threshold"], description="Firing threshold V_th.")
    v_reset: float | None = Field(default=NEURON_DEFAULTS["v_reset"],
                                  description="Reset potential; null for a soft reset (V -= V_th).")
    detach_reset: bool = Field(default=NEURON_DEFAULTS["detach_reset"],
                               description="Cut the gradient through the reset.")
    reset_grad: Literal["surrogate", "straight_through"] = Field(
        default=NEURON_DEFAULTS["reset_grad"],
        description="Gradient through the reset: surrogate, or 2020 straight-through.")
    backend: str = Field(default=AUTO, description="Who runs the multi-step scan: 'auto' (the fastest backend "
                         "that applies) or a registered backend's name (`softspike info` lists them; "
                         "docs/backends.md).")

    @classmethod
    def language_fields(cls, parts: LanguageParts) -> dict[str, Any]:
        return {"neuron": parts.neuron, "surrogate": parts.surrogate | None, "backend": parts.backend}

    def create(self, registry: Registry) -> nn.Module:
        """The neuron module (multi-step) this layer describes, from its registry's plugins."""
        surrogate = None if self.surrogate is None else instantiate(registry.surrogates, self.surrogate)
        return assemble(
            registry,
            instantiate(registry.neurons, self.neuron),
            v_threshold=self.v_threshold,
            v_reset=self.v_reset,
            surrogate=surrogate,
            detach_reset=self.detach_reset,
            reset_grad=self.reset_grad,
            step_mode="m",
            backend=self.backend,
        )

    def out_shape(self, in_shape: Shape, context: ShapeContext) -> Shape:
        return in_shape

    def parameter_count(self, in_shape: Shape, context: ShapeContext) -> int:
        # A neuron's parameters do not grow with its layer (it is built without a shape): building
        # one costs nothing and also proves that the plugin accepts these settings.
        return sum(p.numel() for p in self.create(context.registry).parameters())

    def activation_size(self, in_shape: Shape, out_shape: Shape) -> int:
        return 2 * numel(out_shape)  # the spikes, and the membrane H the surrogate gradient needs

    def build(self, in_shape: Shape, context: BuildContext) -> nn.Module:
        return self.create(context.registry)

    def spikes_out(self, spikes_in: bool) -> bool:
        return True


#: The built-in layer types, by name, as the built-in plugin registers them.
BUILTIN_LAYERS: dict[str, type[LayerSpec]] = {
    "linear": Linear, "conv2d": Conv2d, "batchnorm2d": BatchNorm2d, "maxpool2d": MaxPool2d,
    "avgpool2d": AvgPool2d, "flatten": Flatten, "dropout": Dropout, "neuron": NeuronLayer, "residual": Residual,
}
