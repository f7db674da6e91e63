"""Spec -> module. Every plugin is created (and its parameters validated) here, once; the built
network is plain tensors and modules, with no schema or hook in its forward pass.

Each layer builds itself (`LayerSpec.build`); the builder only walks the checked spec, gives every
layer its input shape and whether its input is spikes, and records each module by its spec path."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from torch import nn

from softspike.core.registry import Registry, get_registry
from softspike.kernels.bn_lif import FusingSequential
from softspike.models.errors import join_path
from softspike.models.layers import BuildContext, instantiate
from softspike.models.limits import check_weights, estimate
from softspike.models.load import CheckedSpec
from softspike.models.network import SpikingNetwork


class _Builder:
    def __init__(self, checked: CheckedSpec, registry: Registry) -> None:
        self.registry = registry
        self.shapes = {info.path: info for info in checked.layers}
        self.paths: list[tuple[str, nn.Module]] = []

    def sequence(self, layers: Sequence[Any], prefix: str, spikes: bool | None) -> nn.Sequential:
        """Build `layers` in order. `spikes` tracks whether the input is spikes (0/1 values), so a linear
        layer fed by them takes the sparse kernel; None inside blocks, whose layers stay dense. A batch
        norm and the neuron after it run as one fused op in training (`FusingSequential`)."""
        body = FusingSequential()
        for i, layer in enumerate(layers):
            path = join_path([prefix, i])
            slot = len(self.paths)  # a block comes before the layers nested in it
            context = BuildContext(path, self.registry, bool(spikes), partial(self.nested, layer=layer, path=path))
            module = layer.build(self.shapes[path].in_shape, context)
            self.paths.insert(slot, (path, module))
            body.append(module)
            if spikes is not None:
                spikes = layer.spikes_out(spikes)
        return body

    def nested(self, field: str, *, layer: Any, path: str) -> nn.Sequential:
        return self.sequence(getattr(layer, field), f"{path}.{field}", None)


def build(checked: CheckedSpec, registry: Registry | None = None, max_memory: int | None = None) -> SpikingNetwork:
    """Build the network of a checked spec (see `softspike.models.load_spec`).

    Weights that would not fit in `max_memory` bytes (default: the machine's memory) are refused
    before any is allocated, with a SpecError naming the largest layer; the network keeps the limit
    and refuses a batch whose activations would exceed it (`SpikingNetwork.max_memory`)."""
    check_weights(checked, max_memory)
    registry = registry or get_registry()
    spec = checked.spec
    encoder = instantiate(registry.encoders, spec.encoder)
    builder = _Builder(checked, registry)
    # The first layer is fed by spikes unless the encoder passes analog values through.
    body = builder.sequence(spec.layers, "layers", not getattr(encoder, "analog", False))
    return SpikingNetwork(
        spec.name, spec.input_shape, spec.T, encoder, body, builder.paths, readout_scale=spec.readout.scale,
        memory=estimate(checked, 1), max_memory=max_memory,
    )


def count_parameters(module: nn.Module, recurse: bool = True) -> int:
    return sum(p.numel() for p in module.parameters(recurse=recurse))
