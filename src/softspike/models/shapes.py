"""Shape inference: the shape of one sample after every layer, from the spec's input shape alone.

This is where a spec's impossible shapes are caught (a conv on a flat tensor, a pool window
larger than the image, a residual block that changes the shape), each named by its JSON path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from softspike.models.errors import join_path

Shape = tuple[int, ...]


class ShapeProblem(Exception):
    """An impossible shape, with the path of the layer that meets it (internal; see SpecError)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class LayerShape:
    """One layer's place in the network: its path, spec, and the shapes around it."""

    path: str
    depth: int
    layer: Any
    in_shape: Shape
    out_shape: Shape


def _show(shape: Shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


def _need_image(layer: Any, shape: Shape, path: str) -> Shape:
    if len(shape) != 3:
        raise ShapeProblem(
            path,
            f"{layer.type} needs an image input [channels, height, width], but the input here is "
            f"{_show(shape)}" + (" (flattened earlier?)" if len(shape) == 1 else ""),
        )
    return shape


def _window(size: int, kernel: int, stride: int, padding: int, what: str, path: str, shape: Shape) -> int:
    out = (size + 2 * padding - kernel) // stride + 1
    if size + 2 * padding < kernel or out < 1:
        raise ShapeProblem(
            path, f"{what} {kernel} is larger than the input {_show(shape)} (plus padding {padding})"
        )
    return out


def layer_output(layer: Any, shape: Shape, path: str) -> Shape:
    """The output shape of one non-residual layer for input `shape` (per sample)."""
    kind = layer.type
    if kind == "linear":
        if len(shape) != 1:
            raise ShapeProblem(
                path,
                f"linear needs a flat input [features], got {_show(shape)}; add {{\"type\": \"flatten\"}} before it",
            )
        return (layer.out_features,)
    if kind == "conv2d":
        c, h, w = _need_image(layer, shape, path)
        k, s, p = layer.kernel_size, layer.stride, layer.padding
        return (layer.out_channels, _window(h, k, s, p, "kernel_size", path, shape),
                _window(w, k, s, p, "kernel_size", path, shape))
    if kind in ("maxpool2d", "avgpool2d"):
        c, h, w = _need_image(layer, shape, path)
        k, p = layer.kernel_size, layer.padding
        s = layer.stride or k
        if p > k // 2:
            raise ShapeProblem(path, f"padding {p} must be at most half of kernel_size {k}")
        return (c, _window(h, k, s, p, "kernel_size", path, shape), _window(w, k, s, p, "kernel_size", path, shape))
    if kind == "batchnorm2d":
        return _need_image(layer, shape, path)
    if kind == "flatten":
        n = 1
        for d in shape:
            n *= d
        return (n,)
    if kind in ("dropout", "neuron"):
        return shape
    raise ShapeProblem(path, f"unknown layer type {kind!r}")


def infer_shapes(input_shape: Sequence[int], layers: Sequence[Any], prefix: str = "layers",
                 depth: int = 0) -> tuple[list[LayerShape], Shape]:
    """Every layer's shapes, in order (residual blocks then their inner layers), and the output shape."""
    shape: Shape = tuple(input_shape)
    if depth == 0 and len(shape) not in (1, 3):
        raise ShapeProblem("input_shape", f"must be [features] or [channels, height, width], got {_show(shape)}")
    out: list[LayerShape] = []
    for i, layer in enumerate(layers):
        path = join_path([prefix, i])
        if layer.type == "residual":
            inner, inner_out = infer_shapes(shape, layer.layers, f"{path}.layers", depth + 1)
            if inner_out != shape:
                raise ShapeProblem(
                    path, f"a residual block must keep its input shape {_show(shape)}, but its layers give "
                    f"{_show(inner_out)}"
                )
            out.append(LayerShape(path, depth, layer, shape, shape))
            out.extend(inner)
            continue
        new = layer_output(layer, shape, path)
        out.append(LayerShape(path, depth, layer, shape, new))
        shape = new
    return out, shape
