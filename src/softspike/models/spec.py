"""The spec language: a network as a JSON document, checked by pydantic models.

The layer, neuron, surrogate and encoder parts of the language come from the plugin registry: each
registered plugin's own params model (for a layer type, its LayerSpec class), with a
`type: Literal[name]` added, joins a union discriminated by "type". So the language is built after
plugin discovery (`language()`), and a third-party neuron is as much a part of it as `lif`, a
third-party layer type as much as `conv2d`.

    {"name": "mnist_fc", "input_shape": [1, 28, 28], "T": 8, "encoder": {"type": "poisson"},
     "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10, "bias": false},
                {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}}],
     "readout": {"type": "rate", "scale": 1.0}}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

from softspike.core.backends import AUTO
from softspike.core.params import FLOAT32_TINY
from softspike.core.registry import Catalog, Registry, get_registry
from softspike.models.base import Size, SpecModel, bounded_numbers
from softspike.models.layers import LanguageParts, LayerSpec
from softspike.models.shapes import ShapeProblem


class RateReadout(SpecModel):
    """The output layer's firing rate over the T steps, times `scale`, is what the loss sees.

    scale = 1 is the 2020 readout (rates in [0, 1] as logits); a larger scale lets cross-entropy
    become confident (rates are capped at 1)."""

    type: Literal["rate"]
    scale: float = Field(default=1.0, ge=FLOAT32_TINY)
    """Factor applied to the rates before the loss (1 = the 2020 readout); at least 1.2e-38, float32's
    smallest normal number (a smaller one rounds to 0 and the loss gives no gradient)."""


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _tagged(kind: str, name: str, params: type[BaseModel], fields: dict[str, Any] | None = None,
            bases: tuple[type, ...] = ()) -> type[BaseModel]:
    """The plugin's params model with `type: Literal[name]` added, unknown keys forbidden and every
    number bounded; `fields` re-annotates fields whose type depends on the installed plugins."""
    annotations: dict[str, Any] = {"type": Literal[name]}  # type: ignore[valid-type]
    namespace: dict[str, Any] = {}
    for field_name, annotation in (fields or {}).items():
        # A fresh Field with only the default and description set, so the union's discriminator
        # survives; the constraints (min_length...) travel in the metadata.
        old = params.model_fields[field_name]
        given: dict[str, Any] = {"description": old.description}
        if not old.is_required():
            given["default"] = old.default
        annotations[field_name] = Annotated[(annotation, *old.metadata, Field(**given))]  # type: ignore[valid-type]
    if "type" in params.model_fields:  # keep its place (first, for a LayerSpec), make it required
        namespace["type"] = Field(description=params.model_fields["type"].description)
    return type(  # type: ignore[return-value]
        f"{_camel(kind)}_{_camel(name)}",
        (params, *bases),
        {
            **namespace,
            "__annotations__": annotations,
            "__module__": __name__,
            "__doc__": params.__doc__ or f"The {kind} '{name}'.",
            "model_config": ConfigDict(extra="forbid"),
            "check_numbers": bounded_numbers,
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


def _layer_models(catalog: Catalog[Any], parts: LanguageParts) -> dict[str, type[BaseModel]]:
    """Each registered layer type, tagged; one that is not a LayerSpec gets its default methods."""
    models = {}
    for entry in catalog:
        cls = entry.params
        bases: tuple[type, ...] = () if issubclass(cls, LayerSpec) else (LayerSpec,)
        fields = cls.language_fields(parts) if hasattr(cls, "language_fields") else {}
        models[entry.name] = _tagged("layer", entry.name, cls, fields, bases)
    return models


def build_language(registry: Registry) -> Language:
    """Build the spec models from the registry's layers, neurons, surrogates and encoders."""
    neurons = _catalog_models("neuron", registry.neurons)
    surrogates = _catalog_models("surrogate", registry.surrogates)
    encoders = _catalog_models("encoder", registry.encoders)
    backends = Literal[(AUTO, *registry.backends.names())]  # type: ignore[valid-type]
    parts = LanguageParts(_union(list(neurons.values())), _union(list(surrogates.values())), "LayerUnion", backends)
    layer_models = _layer_models(registry.layers, parts)
    layer_union = _union(list(layer_models.values()))
    for model in layer_models.values():  # layers that hold layers refer to the union of all of them
        model.model_rebuild(_types_namespace={"LayerUnion": layer_union})
    readouts: dict[str, type[BaseModel]] = {"rate": RateReadout}

    spec_fields: dict[str, Any] = dict(
        schema_=(str | None, Field(default=None, alias="$schema", description="URL or path of this JSON Schema.")),
        name=(str, Field(min_length=1, description="The network's name.")),
        description=(str, Field(default="", description="Free text.")),
        input_shape=(
            list[Size],
            Field(min_length=1, max_length=4, description="One sample: [features] or [channels, height, width]; with "
                  "the frames encoder, data with its own time axis: [T, features] or [T, channels, height, width]."),
        ),
        T=(Size, Field(description="Number of time steps each sample is presented for (>= 1).")),
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
    catalogs = [*registry.catalogs().items(), ("layer", registry.layers)]
    return (*((kind, e.name, e.params) for kind, cat in catalogs for e in cat), *registry.backends.names())


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
