"""The spec language: a network as a JSON document, checked by pydantic models.

The neuron, surrogate and encoder parts of the language come from the plugin registry: each
registered plugin's own params model, with a `type: Literal[name]` added, joins a union
discriminated by "type". So the language is built after plugin discovery (`language()`), and a
third-party neuron is as much a part of it as `lif`.

    {"name": "mnist_fc", "input_shape": [1, 28, 28], "T": 8, "encoder": {"type": "poisson"},
     "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10, "bias": false},
                {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}}],
     "readout": {"type": "rate", "scale": 1.0}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

from softspike.core.params import Params
from softspike.core.registry import Catalog, Registry, get_registry
from softspike.models.shapes import ShapeProblem


class SpecModel(Params):
    """Strict base of every part of a spec (the plugins' own base): unknown keys and NaN/inf are errors."""


class Linear(SpecModel):
    """Fully connected layer; its input size is the flat feature count before it."""

    type: Literal["linear"]
    out_features: int = Field(ge=1)
    """Output features (>= 1)."""
    bias: bool = True


class Conv2d(SpecModel):
    """2-D convolution with square kernels; its input channels come from the shape before it."""

    type: Literal["conv2d"]
    out_channels: int = Field(ge=1)
    """Output channels (>= 1)."""
    kernel_size: int = Field(ge=1)
    stride: int = Field(default=1, ge=1)
    padding: int = Field(default=0, ge=0)
    bias: bool = True


class BatchNorm2d(SpecModel):
    """Batch normalisation over channels of a [C, H, W] tensor (statistics over time and batch)."""

    type: Literal["batchnorm2d"]
    eps: float = Field(default=1e-5, gt=0)
    momentum: float = Field(default=0.1, gt=0, le=1)


class MaxPool2d(SpecModel):
    """Max pooling over square windows; stride defaults to the window size."""

    type: Literal["maxpool2d"]
    kernel_size: int = Field(default=2, ge=1)
    stride: int | None = Field(default=None, ge=1)
    padding: int = Field(default=0, ge=0)


class AvgPool2d(SpecModel):
    """Average pooling over square windows; stride defaults to the window size."""

    type: Literal["avgpool2d"]
    kernel_size: int = Field(default=2, ge=1)
    stride: int | None = Field(default=None, ge=1)
    padding: int = Field(default=0, ge=0)


class Flatten(SpecModel):
    """Flatten [C, H, W] to [C*H*W] features."""

    type: Literal["flatten"]


class Dropout(SpecModel):
    """Dropout with probability p (a fresh mask at every time step)."""

    type: Literal["dropout"]
    p: float = Field(default=0.5, ge=0, lt=1)
    """Probability of zeroing an element, in [0, 1)."""


class RateReadout(SpecModel):
    """The output layer's firing rate over the T steps, times `scale`, is what the loss sees.

    scale = 1 is the 2020 readout (rates in [0, 1] as logits); a larger scale lets cross-entropy
    become confident (rates are capped at 1)."""

    type: Literal["rate"]
    scale: float = Field(default=1.0, gt=0)
    """Factor applied to the rates before the loss (1 = the 2020 readout)."""


STATIC_LAYERS: tuple[type[SpecModel], ...] = (Linear, Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, Flatten, Dropout)


def _tag(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].annotation.__args__[0])  # type: ignore[union-attr]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _tagged(kind: str, name: str, params: type[BaseModel]) -> type[BaseModel]:
    """The plugin's params model with `type: Literal[name]` added (and unknown keys forbidden)."""
    return type(  # type: ignore[return-value]
        f"{_camel(kind)}_{_camel(name)}",
        (params,),
        {
            "__annotations__": {"type": Literal[name]},  # type: ignore[valid-type]
            "__module__": __name__,
            "__doc__": params.__doc__ or f"The {kind} '{name}'.",
            "model_config": ConfigDict(extra="forbid"),
        },
    )


def _union(models: list[type[BaseModel]]) -> Any:
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007


@dataclass(frozen=True)
class Language:
    """The spec models for one registry: the top-level `Spec` and each part, by type name."""

    spec: type[BaseModel]
    layers: dict[str, type[BaseModel]]
    neurons: dict[str, type[BaseModel]]
    surrogates: dict[str, type[BaseModel]]
    encoders: dict[str, type[BaseModel]]
    readouts: dict[str, type[BaseModel]]

    def part(self, where: str | int | None, type_name: Any) -> type[BaseModel] | None:
        """The model of a spec part: the top level (where=None), a layer (an index) or a field."""
        if where is None:
            return self.spec
        table = self.layers if isinstance(where, int) else getattr(self, f"{where}s", None)
        return table.get(type_name) if isinstance(table, dict) and isinstance(type_name, str) else None


def _catalog_models(kind: str, catalog: Catalog[Any]) -> dict[str, type[BaseModel]]:
    return {entry.name: _tagged(kind, entry.name, entry.params) for entry in catalog}


def build_language(registry: Registry) -> Language:
    """Build the spec models from the registry's neurons, surrogates and encoders."""
    neurons = _catalog_models("neuron", registry.neurons)
    surrogates = _catalog_models("surrogate", registry.surrogates)
    encoders = _catalog_models("encoder", registry.encoders)
    neuron_union, surrogate_union = _union(list(neurons.values())), _union(list(surrogates.values()))

    neuron_fields: dict[str, Any] = dict(
        type=(Literal["neuron"], ...),
        neuron=(neuron_union, Field(description="The dynamics: a registered neuron and its parameters.")),
        surrogate=(surrogate_union | None, Field(default=None, description="The surrogate gate (default: sigmoid).")),
        v_threshold=(float, Field(default=1.0, description="Firing threshold V_th.")),
        v_reset=(float | None, Field(default=0.0, description="Reset potential; null for a soft reset (V -= V_th).")),
        detach_reset=(bool, Field(default=False, description="Cut the gradient through the reset.")),
        reset_grad=(
            Literal["surrogate", "straight_through"],
            Field(default="surrogate", description="Gradient through the reset: surrogate, or 2020 straight-through."),
        ),
    )
    neuron_layer = create_model(
        "NeuronLayer",
        __base__=SpecModel,
        __doc__="Spiking neurons: dynamics, threshold, reset and surrogate gate, run over all T steps.",
        **neuron_fields,
    )
    residual_fields: dict[str, Any] = dict(
        type=(Literal["residual"], ...),
        layers=(cast(Any, list)["LayerSpec"], Field(min_length=1, description="The block's layers.")),
    )
    residual = create_model(
        "ResidualBlock",
        __base__=SpecModel,
        __doc__="A list of layers whose output is added to its input (shapes must agree).",
        **residual_fields,
    )
    layer_models: dict[str, type[BaseModel]] = {_tag(m): m for m in STATIC_LAYERS}
    layer_models["neuron"] = neuron_layer
    layer_models["residual"] = residual
    layer_union = _union(list(layer_models.values()))
    residual.model_rebuild(_types_namespace={"LayerSpec": layer_union})
    readouts: dict[str, type[BaseModel]] = {"rate": RateReadout}

    spec_fields: dict[str, Any] = dict(
        schema_=(str | None, Field(default=None, alias="$schema", description="URL or path of this JSON Schema.")),
        name=(str, Field(min_length=1, description="The network's name.")),
        description=(str, Field(default="", description="Free text.")),
        input_shape=(
            list[Annotated[int, Field(ge=1)]],
            Field(min_length=1, max_length=4, description="One sample: [features] or [channels, height, width]; with "
                  "the frames encoder, data with its own time axis: [T, features] or [T, channels, height, width]."),
        ),
        T=(int, Field(ge=1, description="Number of time steps each sample is presented for (>= 1).")),
        encoder=(_union(list(encoders.values())), Field(description="How input becomes spike trains.")),
        layers=(cast(Any, list)[layer_union], Field(min_length=1, description="The layers, in order.")),
        readout=(_union(list(readouts.values())), Field(default=RateReadout(type="rate", scale=1.0),
                                                        description="Output to logits.")),
    )
    spec = create_model(
        "NetworkSpec",
        __base__=SpecModel,
        __doc__="A spiking network: input, time steps, encoder, layers and readout.",
        **spec_fields,
    )
    return Language(spec, layer_models, neurons, surrogates, encoders, readouts)


_cached: tuple[tuple[Any, ...], Language] | None = None


def _signature(registry: Registry) -> tuple[Any, ...]:
    return tuple((kind, e.name, e.params) for kind, cat in registry.catalogs().items() for e in cat)


def language(registry: Registry | None = None) -> Language:
    """The spec language of `registry` (default: the process-wide one), rebuilt when its plugins change."""
    global _cached
    key = _signature(registry or get_registry())
    if _cached is None or _cached[0] != key:
        _cached = (key, build_language(registry or get_registry()))
    return _cached[1]


def fields_for(lang: Language | None, parent: Any, where: str | int | None) -> list[str] | None:
    """Field names accepted by the spec part `parent` found at `where` (for 'did you mean')."""
    lang = lang or language()
    model = lang.part(where, parent.get("type") if isinstance(parent, dict) else None)
    if model is None:
        return None
    return [f.alias or name for name, f in model.model_fields.items() if name != "schema_"]


def step_shape(spec: Any, registry: Registry | None = None) -> tuple[int, ...]:
    """The shape of one time step of a sample, which the layers see: the spec's input_shape, or, for an
    encoder declaring `time_axis` (frames), input_shape without its leading T. Raises ShapeProblem."""
    shape = tuple(spec.input_shape)
    entry = (registry or get_registry()).encoders.get(spec.encoder.type)
    if getattr(entry.factory, "time_axis", False):
        if len(shape) not in (2, 4) or shape[0] != spec.T:
            raise ShapeProblem("input_shape", f"the {spec.encoder.type} encoder takes data with its own time axis: "
                               f"[T, features] or [T, channels, height, width] with T = {spec.T}, got {list(shape)}")
        return shape[1:]
    if len(shape) == 4:
        raise ShapeProblem("input_shape", f"{list(shape)} has a time axis ([T, channels, height, width]), which "
                           'only an encoder taking frames reads: use "encoder": {"type": "frames"}')
    return shape


def json_schema(registry: Registry | None = None) -> dict[str, Any]:
    """The JSON Schema of the spec language, with every installed plugin."""
    schema = language(registry).spec.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "softspike network spec"
    return schema
