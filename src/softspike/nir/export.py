"""softspike -> NIR: one NIR node per layer of a spec, in a chain from `input` to `output`.

    linear           Affine(W, b), or Linear(W) without bias
    conv2d           Conv2d (dilation 1, groups 1; a zero bias when the layer has none)
    avgpool2d        AvgPool2d
    flatten          Flatten(start_dim=-3) over the sample's [C, H, W] (its dims counted from the end)
    dropout          nothing (identity at inference)
    neuron if        IF(r=1, v_threshold, v_reset)                        v ← v + X per step
    neuron lif       LIF(tau=τ·dt, r=1, v_leak=v_reset, v_threshold, v_reset)
    parametric_lif   LIF with the learnt τ (fixed from then on)
    cuba_lif         CubaLIF(tau_mem=τ_mem·dt, tau_syn=τ_syn·dt, r=1, w_in=1, ...)

Everything else (max pooling, batch norm, residual blocks, soft reset, ALIF, third-party neurons)
has no NIR node and is an error naming the layer. Neuron parameters are written per neuron (arrays
of the layer's shape), as NIR expects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from softspike.models.builder import build
from softspike.models.load import CheckedSpec, check_spec, load_spec
from softspike.models.network import SpikingNetwork
from softspike.nir.common import DEFAULT_DT, META_DT, META_LAYER, META_SPEC, NIRError, check_dt, nir_module

SpecLike = CheckedSpec | str | Path | Mapping[str, Any]
Weights = SpikingNetwork | Mapping[str, Tensor] | None


def _checked(spec: SpecLike) -> CheckedSpec:
    if isinstance(spec, CheckedSpec):
        return spec
    if isinstance(spec, Mapping):
        return check_spec(dict(spec))
    return load_spec(str(spec))


def _np(t: Tensor | None) -> np.ndarray:
    assert t is not None
    return t.detach().cpu().double().numpy()


def node_name(path: str) -> str:
    """`layers[3]` -> `layers_3` (NIR readers turn node names into module names: no dots or brackets)."""
    return path.replace("].layers[", "_").replace("[", "_").replace("]", "")


def _neuron_node(layer: Any, module: nn.Module, shape: tuple[int, ...], dt: float, where: str) -> Any:
    nir = nir_module()

    kind = layer.neuron.type
    if layer.v_reset is None:
        raise NIRError(
            f"{where}: soft reset (v_reset null) has no NIR equivalent (NIR neurons reset to v_reset); "
            "use a number for v_reset, e.g. 0.0"
        )

    def full(value: float) -> np.ndarray:
        return np.full(shape, float(value), dtype=np.float64)

    ones, thr, reset = full(1.0), full(layer.v_threshold), full(layer.v_reset)
    # What only training uses (surrogate, reset gradient) rides along for a softspike reader.
    training = {k: getattr(layer, k) for k in ("detach_reset", "reset_grad")}
    if layer.surrogate is not None:
        training["surrogate"] = layer.surrogate.model_dump(mode="json")
    meta = {META_LAYER: json.dumps(training, sort_keys=True)}
    if kind == "if":
        return nir.IF(r=ones, v_threshold=thr, v_reset=reset, metadata=meta)
    if kind in ("lif", "parametric_lif"):
        dynamics: Any = module.dynamics
        tau = float(dynamics.tau)
        return nir.LIF(tau=full(tau * dt), r=ones, v_leak=reset, v_threshold=thr, v_reset=reset, metadata=meta)
    if kind == "cuba_lif":
        p = layer.neuron
        return nir.CubaLIF(tau_mem=full(p.tau_mem * dt), tau_syn=full(p.tau_syn * dt), r=ones, v_leak=reset,
                           v_threshold=thr, v_reset=reset, w_in=ones, metadata=meta)
    raise NIRError(
        f"{where}: neuron {kind!r} has no NIR node (NIR has IF, LIF and CubaLIF: softspike's 'if', 'lif', "
        "'parametric_lif' and 'cuba_lif')"
    )


def _layer_node(info: Any, module: nn.Module, dt: float) -> Any:
    """The NIR node of one top-level layer, or None for a layer that vanishes at inference."""
    nir = nir_module()

    layer, where = info.layer, info.path
    kind = layer.type
    inner: Any = getattr(module, "module", module)  # MultiStep wraps the stateless layers
    if kind == "neuron":
        return _neuron_node(layer, module, tuple(info.out_shape), dt, where)
    if kind == "linear":
        if layer.bias:
            return nir.Affine(weight=_np(inner.weight), bias=_np(inner.bias))
        return nir.Linear(weight=_np(inner.weight))
    if kind == "conv2d":
        bias = _np(inner.bias) if layer.bias else np.zeros(layer.out_channels)
        return nir.Conv2d(input_shape=tuple(info.in_shape[1:]), weight=_np(inner.weight), stride=layer.stride,
                          padding=layer.padding, dilation=1, groups=1, bias=bias)
    if kind == "avgpool2d":
        k, s = layer.kernel_size, layer.stride or layer.kernel_size
        return nir.AvgPool2d(kernel_size=np.array([k, k]), stride=np.array([s, s]),
                             padding=np.array([layer.padding, layer.padding]))
    if kind == "flatten":
        # Counted from the end, so that a reader that builds torch.nn.Flatten(start_dim, end_dim) (Norse,
        # snnTorch, nirtorch) flattens one sample's dims whether or not a batch dim leads: start_dim 0
        # would flatten the batch too, 1 a sample given without one.
        return nir.Flatten(input_type={"input": np.array(info.in_shape)}, start_dim=-len(info.in_shape), end_dim=-1)
    if kind == "dropout":
        return None
    hints = {
        "maxpool2d": "NIR has only sum and average pooling: use avgpool2d",
        "batchnorm2d": "fold it into the convolution before it, or leave it out",
        "residual": "NIR export takes a chain of layers",
    }
    raise NIRError(f"{where}: layer type {kind!r} has no NIR node ({hints.get(kind, 'no mapping')})")


def export_nir(spec: SpecLike, weights: Weights = None, dt: float = DEFAULT_DT) -> Any:
    """The NIR graph of a spec's network.

    `spec` is a checked spec, a spec file or zoo name, or a spec as a dict; `weights` the trained
    network built from it, or its state_dict (None: freshly initialised weights). One time step
    lasts `dt` seconds, so a LIF's τ of k steps is written as k·dt seconds."""
    nir = nir_module()

    dt = check_dt(dt)
    checked = _checked(spec)
    if isinstance(weights, SpikingNetwork):
        net = weights
    else:
        net = build(checked)
        if weights is not None:
            try:
                net.load_state_dict(dict(weights))
            except RuntimeError as err:
                raise NIRError(f"the weights do not fit spec {checked.spec.name!r}: "
                               f"{str(err).splitlines()[0]}") from None
    modules = dict(net.layer_paths)
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(checked.spec.input_shape)})}
    edges: list[tuple[str, str]] = []
    prev = "input"
    with torch.no_grad():
        for info in checked.layers:
            if info.depth > 0:
                continue  # inside a residual block, which itself is refused below
            node = _layer_node(info, modules[info.path], dt)
            if node is None:
                continue
            name = node_name(info.path)
            nodes[name] = node
            edges.append((prev, name))
            prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array(checked.output_shape)})
    edges.append((prev, "output"))
    meta = {META_SPEC: json.dumps(checked.to_json(), sort_keys=True), META_DT: dt}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)


def write_nir(graph: Any, path: str | Path) -> None:
    """Write a NIR graph to `path` (HDF5, the `.nir` format every NIR tool reads)."""
    nir = nir_module()

    try:
        nir.write(str(path), graph)
    except OSError as err:
        raise NIRError(f"{path}: cannot write the NIR file ({err})") from None
