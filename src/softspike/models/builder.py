"""Spec -> module. Every plugin is created (and its parameters validated) here, once; the built
network is plain tensors and modules, with no schema or hook in its forward pass."""

from __future__ import annotations

from typing import Any

from torch import nn

from softspike.core.fused.linear import SpikeLinear
from softspike.core.registry import Registry, get_registry
from softspike.layers import MultiStep
from softspike.models.load import CheckedSpec
from softspike.models.network import Residual, SpikingNetwork
from softspike.models.shapes import Shape


def _params(part: Any) -> dict[str, Any]:
    return {k: getattr(part, k) for k in type(part).model_fields if k != "type"}


def _stateless(layer: Any, shape: Shape, spikes_in: bool = False) -> nn.Module:
    kind = layer.type
    if kind == "linear":
        # Fed by spikes: same parameters and results (to rounding), sums only the inputs that fired.
        cls = SpikeLinear if spikes_in else nn.Linear
        return cls(shape[0], layer.out_features, bias=layer.bias)
    if kind == "conv2d":
        return nn.Conv2d(shape[0], layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                         bias=layer.bias)
    if kind == "batchnorm2d":
        return nn.BatchNorm2d(shape[0], eps=layer.eps, momentum=layer.momentum)
    if kind == "maxpool2d":
        return nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
    if kind == "avgpool2d":
        return nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
    if kind == "flatten":
        return nn.Flatten()
    if kind == "dropout":
        return nn.Dropout(layer.p)
    raise AssertionError(f"layer type {kind!r} has no builder")  # the spec models admit no other


def _neuron(layer: Any, registry: Registry) -> nn.Module:
    surrogate = None
    if layer.surrogate is not None:
        surrogate = registry.surrogates.create(layer.surrogate.type, **_params(layer.surrogate))
    return registry.neurons.create(  # type: ignore[no-any-return]
        layer.neuron.type,
        **_params(layer.neuron),
        v_threshold=layer.v_threshold,
        v_reset=layer.v_reset,
        surrogate=surrogate,
        detach_reset=layer.detach_reset,
        reset_grad=layer.reset_grad,
        step_mode="m",
    )


def build(checked: CheckedSpec, registry: Registry | None = None) -> SpikingNetwork:
    """Build the network of a checked spec (see `softspike.models.load_spec`)."""
    registry = registry or get_registry()
    spec = checked.spec
    encoder = registry.encoders.create(spec.encoder.type, **_params(spec.encoder))
    by_path: dict[str, nn.Module] = {}
    containers: dict[str, nn.Sequential] = {"layers": nn.Sequential()}
    # Whether the next top-level layer is fed by spikes (0/1 values): true after a neuron or a spike
    # encoder, and kept through layers that move spikes around without changing their values.
    spikes = not getattr(encoder, "analog", False)
    for info in checked.layers:
        container = info.path.rsplit("[", 1)[0]
        parent = containers[container]
        spikes_in = spikes and container == "layers"
        if container == "layers":
            spikes = info.layer.type == "neuron" or (spikes and info.layer.type in ("flatten", "maxpool2d"))
        if info.layer.type == "residual":
            body = nn.Sequential()
            containers[f"{info.path}.layers"] = body
            module: nn.Module = Residual(body)
        elif info.layer.type == "neuron":
            module = _neuron(info.layer, registry)
        else:
            module = MultiStep(_stateless(info.layer, info.in_shape, spikes_in))
        parent.append(module)
        by_path[info.path] = module
    return SpikingNetwork(
        spec.name, spec.input_shape, spec.T, encoder, containers["layers"], list(by_path.items()),
        readout_scale=spec.readout.scale,
    )


def count_parameters(module: nn.Module, recurse: bool = True) -> int:
    return sum(p.numel() for p in module.parameters(recurse=recurse))
