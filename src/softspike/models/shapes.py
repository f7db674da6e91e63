"""The shape pass: the shape of one sample after every layer, and every layer's parameter and
activation sizes, from the spec alone (by arithmetic: no weight is allocated).

This is where a spec's impossible shapes are caught (a conv on a flat tensor, a pool window larger
than the image, a residual block that changes the shape, blocks nested too deeply), each named by
its JSON path. The layers themselves say what they do (models/layers.py); this pass only walks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from softspike.core.registry import Registry
from softspike.models.base import MAX_NESTING
from softspike.models.errors import join_path
from softspike.models.layers import Shape, ShapeContext, ShapeError, show


class ShapeProblem(Exception):
    """An impossible shape, with the path of the layer that meets it (internal; see SpecError)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class LayerShape:
    """One layer's place in the network: its path, spec, the shapes around it and its sizes.

    `params` counts this layer's own learnable parameters (not those of layers nested in it);
    `activations` the elements per sample and time step it keeps for the backward pass."""

    path: str
    depth: int
    layer: Any
    in_shape: Shape
    out_shape: Shape
    params: int = 0
    activations: int = 0


class _Pass:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.layers: list[LayerShape] = []

    def sequence(self, layers: Sequence[Any], shape: Shape, prefix: str, depth: int) -> Shape:
        if depth > MAX_NESTING:
            top = prefix.split(".", 1)[0]
            raise ShapeProblem(top, f"blocks are nested more than {MAX_NESTING} deep")
        for i, layer in enumerate(layers):
            path = join_path([prefix, i])
            slot = len(self.layers)  # a block comes before the layers nested in it
            context = ShapeContext(path, self.registry, partial(self.nested, path=path, depth=depth))
            try:
                out = layer.out_shape(shape, context)
                out = _checked_shape(out)
                params = int(layer.parameter_count(shape, context))
                activations = int(layer.activation_size(shape, out))
            except ShapeError as err:
                raise ShapeProblem(path, str(err)) from None
            except (ShapeProblem, RecursionError):
                raise
            except Exception as err:  # a plugin's layer (or neuron) that fails: report it, never a traceback
                reason = f"the {layer.type} layer cannot be used: {type(err).__name__}: {err}"
                raise ShapeProblem(path, reason) from None
            self.layers.insert(slot, LayerShape(path, depth, layer, shape, out, params, activations))
            shape = out
        return shape

    def nested(self, layers: Sequence[Any], shape: Shape, field: str, *, path: str, depth: int) -> Shape:
        return self.sequence(layers, shape, f"{path}.{field}", depth + 1)


def _checked_shape(out: Any) -> Shape:
    if not (isinstance(out, (tuple, list)) and out and all(isinstance(d, int) and d >= 1 for d in out)):
        raise ShapeError(f"its out_shape must be a non-empty sequence of positive integers, got {out!r}")
    return tuple(out)


def infer_shapes(input_shape: Sequence[int], layers: Sequence[Any], registry: Registry,
                 prefix: str = "layers") -> tuple[list[LayerShape], Shape]:
    """Every layer's shapes and sizes, in order (a block, then the layers nested in it), and the output shape."""
    shape: Shape = tuple(input_shape)
    if len(shape) not in (1, 3):
        raise ShapeProblem("input_shape", f"must be [features] or [channels, height, width], got {show(shape)}")
    walk = _Pass(registry)
    out = walk.sequence(layers, shape, prefix, 0)
    return walk.layers, out
