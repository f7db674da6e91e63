"""From a SPEC argument (a file path or a zoo name) or a JSON value to a checked spec."""

from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from softspike.core.registry import Registry, get_registry
from softspike.models.base import MAX_NESTING
from softspike.models.errors import SpecError, join_path, problems_from
from softspike.models.layers import part_params
from softspike.models.shapes import LayerShape, Shape, ShapeProblem, infer_shapes
from softspike.models.spec import language, step_shape

ZOO_PACKAGE = "softspike.models.zoo"


@dataclass(frozen=True)
class CheckedSpec:
    """A spec that validated and whose shapes work out: ready to build."""

    spec: Any
    source: str
    layers: list[LayerShape]
    output_shape: Shape
    #: Learnable parameters of the encoder (most have none).
    encoder_params: int = 0

    @property
    def num_classes(self) -> int:
        return self.output_shape[0]

    @property
    def step_shape(self) -> Shape:
        """One time step of the encoder's output, [T, B, *step_shape]: the input_shape, without its leading
        T for an encoder that reads the data's own time axis (frames)."""
        return self.layers[0].in_shape

    @property
    def num_parameters(self) -> int:
        """Learnable parameters of the whole network, counted without building it."""
        return self.encoder_params + sum(info.params for info in self.layers)

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON value (defaults filled in), e.g. to store in a checkpoint."""
        data: dict[str, Any] = self.spec.model_dump(mode="json", by_alias=True, exclude_none=False)
        data.pop("$schema", None)
        return data


def zoo_names() -> list[str]:
    """The names of the specs shipped with softspike."""
    return sorted(p.name[:-5] for p in resources.files(ZOO_PACKAGE).iterdir() if p.name.endswith(".json"))


def read_spec_text(arg: str) -> tuple[str, str]:
    """The text of a spec given as a file path or a zoo name, and a name for it in messages."""
    path = Path(arg)
    if path.is_file():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as err:
            raise SpecError(str(path), [f"<file>: cannot read it ({err})"]) from None
    names = zoo_names()
    if arg in names:
        return resources.files(ZOO_PACKAGE).joinpath(f"{arg}.json").read_text(encoding="utf-8"), f"zoo:{arg}"
    close = difflib.get_close_matches(arg, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    reason = "is a directory, not a spec file" if path.is_dir() else "no such file, and no zoo spec by that name"
    raise SpecError(arg, [f"<file>: {reason}{hint} (zoo: {', '.join(names)})"])


def parse_json(text: str, source: str) -> Any:
    """Parse JSON text; a syntax error names the line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        where = f"line {err.lineno}, column {err.colno}"
        raise SpecError(source, [f"<file>: not valid JSON: {err.msg} at {where}"]) from None
    except RecursionError:
        raise SpecError(source, ["<file>: not valid JSON: nested too deeply"]) from None
    except ValueError:  # the one other error json raises: an integer longer than Python reads
        limit = sys.get_int_max_str_digits()
        raise SpecError(source, [f"<file>: not valid JSON: an integer literal has more than {limit} digits"]) from None


#: JSON nesting a spec may have: blocks nested MAX_NESTING deep take about three levels each.
MAX_JSON_DEPTH = 4 * MAX_NESTING


def _too_deep(data: Any) -> str | None:
    """The top-level key (or layer) under which `data` nests deeper than MAX_JSON_DEPTH, if any.

    Checked before pydantic sees the value, so that no validator recurses without bound."""
    stack: list[tuple[Any, int, str]] = [(data, 0, "<root>")]
    while stack:
        value, depth, top = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return top
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            if isinstance(item, (dict, list)):
                where = top if depth > 1 else join_path([key] if depth == 0 else [top, key])
                stack.append((item, depth + 1, where))
    return None


def check_spec(data: Any, source: str = "<spec>", registry: Registry | None = None) -> CheckedSpec:
    """Validate a JSON value as a spec and infer its shapes and sizes; every problem raises SpecError."""
    if not isinstance(data, dict):
        raise SpecError(source, [f"<root>: a spec must be a JSON object, got {_json_type(data)}"])
    deep = _too_deep(data)
    if deep is not None:
        raise SpecError(source, [f"{deep}: nested too deeply (more than {MAX_JSON_DEPTH} levels of JSON; blocks may "
                                 f"nest at most {MAX_NESTING} deep)"])
    registry = registry or get_registry()
    lang = language(registry)
    try:
        spec: BaseModel = lang.spec.model_validate(data, strict=True)
    except ValidationError as err:
        raise SpecError(source, problems_from(err, data, lang)) from None
    try:
        shapes, out = infer_shapes(step_shape(spec, registry), spec.layers, registry)  # type: ignore[attr-defined]
        encoder_params = _encoder_params(spec, registry)
    except ShapeProblem as err:
        raise SpecError(source, [f"{err.path}: {err.reason}"]) from None
    if len(out) != 1:
        raise SpecError(
            source, [f"layers: the network ends in {list(out)}, but the readout needs a flat [classes] output; "
                     "end with flatten, linear and neuron layers"]
        )
    return CheckedSpec(spec, source, shapes, out, encoder_params)


def _encoder_params(spec: Any, registry: Registry) -> int:
    try:
        encoder = registry.encoders.create(spec.encoder.type, **part_params(spec.encoder))
    except Exception as err:  # a plugin's encoder that refuses its validated settings
        raise ShapeProblem("encoder", f"cannot be used: {type(err).__name__}: {err}") from None
    return sum(p.numel() for p in encoder.parameters())


def load_spec(arg: str) -> CheckedSpec:
    """Read, parse and check the spec named by a SPEC argument (file path or zoo name)."""
    text, source = read_spec_text(arg)
    return check_spec(parse_json(text, source), source)


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
