"""NIR -> softspike: a chain of NIR nodes from `input` to `output` becomes a spec and its weights.

    Affine / Linear     linear (a zero bias becomes bias false)
    Conv2d              conv2d (square kernel, equal strides and paddings, dilation 1, groups 1)
    AvgPool2d           avgpool2d;  SumPool2d: avgpool2d, its k² folded into the weights before it
    Flatten             flatten (all dims of the sample)
    IF                  neuron if, v ← v + R·X per step (dt does not enter, as in Norse)
    LIF                 neuron lif, τ = tau / dt steps
    CubaLIF             neuron cuba_lif (where registered), τ_mem = tau_mem / dt, τ_syn = tau_syn / dt
    Threshold           neuron lif with τ = 1 (H = X: a stateless threshold)
    Scale, r, w_in      folded into the weights of the linear or conv layer before them
    v_leak ≠ v_reset    (LIF) the difference folded into the bias before it

softspike's LIF leaks towards its reset potential: H = V + (X − (V − V_reset))/τ. NIR's leaks
towards v_leak; (v_leak − v_reset) is a constant input, so it moves into the bias of the layer
that feeds the neuron. Per-neuron parameters must be equal across the layer (softspike keeps one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softspike.core.registry import get_registry
from softspike.models.builder import build
from softspike.models.load import CheckedSpec, check_spec
from softspike.models.network import SpikingNetwork
from softspike.nir.common import (
    DEFAULT_DT,
    META_LAYER,
    NIRError,
    as_array,
    as_int,
    check_dt,
    json_meta,
    nir_module,
    uniform,
)
from softspike.nir.metadata import StoredSpec, read_metadata

DEFAULT_T = 8
#: A time constant of at most dt/2 makes the Euler step V += (X - V)/τ unstable: |1 - 1/τ| >= 1.
MIN_TAU_STEPS = 0.5
#: Beyond this many steps 1/τ is subnormal in float32 (below its smallest normal number).
MAX_TAU_STEPS = float(1.0 / np.finfo(np.float32).tiny)


@dataclass
class _Weights:
    """A linear or conv layer's weights while the chain is read (gains and offsets fold into them)."""

    weight: np.ndarray
    bias: np.ndarray | None
    passed: list[str] = field(default_factory=list)  # layer types met since (flatten, pooling)


@dataclass
class Imported:
    """A NIR graph made softspike: the spec (a JSON value), the checked spec and the built network."""

    spec: dict[str, Any]
    checked: CheckedSpec
    network: SpikingNetwork
    dt: float

    def checkpoint(self) -> dict[str, Any]:
        """A softspike checkpoint of the imported weights (`softspike evaluate --checkpoint` reads it)."""
        from softspike.train.checkpoint import FORMAT
        from softspike.train.config import TrainConfig

        return {"format": FORMAT, "spec": json.dumps(self.checked.to_json(), sort_keys=True),
                "config": json.dumps(TrainConfig().model_dump()), "model": self.network.state_dict()}

    def save(self, spec_path: str | Path, weights_path: str | Path | None = None) -> None:
        """Write the spec as JSON and, if asked, the weights as a checkpoint."""
        from softspike.train.checkpoint import save_checkpoint

        Path(spec_path).write_text(json.dumps(self.spec, indent=2) + "\n", encoding="utf-8")
        if weights_path is not None:
            save_checkpoint(Path(weights_path), self.checkpoint())


def read_nir(path: str | Path) -> Any:
    """Read a .nir file."""
    nir = nir_module()

    if not Path(path).is_file():
        raise NIRError(f"{path}: no such file")
    try:
        return nir.read(str(path))
    except Exception as err:  # h5py and nir raise many kinds; all mean "not a NIR file we can read"
        raise NIRError(f"{path}: not a readable NIR file ({type(err).__name__}: {err})") from None


def _chain(graph: Any) -> list[tuple[str, Any]]:
    """The nodes from input to output, in order; anything but a single chain is an error."""
    nir = nir_module()

    nodes: dict[str, Any] = graph.nodes
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NIRError(f"the graph has {len(inputs)} Input nodes; softspike imports graphs with exactly one")
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in graph.edges:
        for end in (a, b):
            if end not in nodes:
                raise NIRError(f"edge ({a!r}, {b!r}) names a node {end!r} that the graph does not have")
        if b not in succ[a]:
            succ[a].append(b)
            pred[b].append(a)
    order, name = [], inputs[0]
    while True:
        if len(pred[name]) > 1:
            raise NIRError(f"node {name!r} has {len(pred[name])} inputs ({', '.join(pred[name])}); softspike "
                           "imports a chain of layers (no branches, sums or recurrence)")
        order.append((name, nodes[name]))
        if isinstance(nodes[name], nir.Output):
            return order
        if len(succ[name]) != 1:
            what = "no successor (the chain never reaches an Output)" if not succ[name] else (
                f"{len(succ[name])} successors ({', '.join(succ[name])}); softspike imports a chain of layers")
            raise NIRError(f"node {name!r} has {what}")
        name = succ[name][0]
        if any(name == n for n, _ in order):
            raise NIRError(f"node {name!r} closes a loop; softspike imports feed-forward chains only")


def _input_shape(node: Any, given: Sequence[int] | None) -> list[int]:
    if given is not None:
        return [int(d) for d in given]
    shape = node.input_type.get("input") if isinstance(node.input_type, dict) else None
    dims = as_int(shape, "input_type", "the Input node") if shape is not None and np.size(shape) else []
    # nirtorch's tracer writes the sample data's shape, batch included: [1, N] or [1, C, H, W].
    if len(dims) in (2, 4) and dims[0] == 1:
        dims = dims[1:]
    if len(dims) not in (1, 3):
        raise NIRError(f"the Input node has shape {dims}; softspike needs [features] or [channels, height, "
                       "width]: give the sample's shape (input_shape= / --input-shape)")
    return dims


def _one_int(value: Any, what: str, where: str) -> int:
    vals = as_int(value, what, where)
    if len(vals) != 1:
        raise NIRError(f"{where}: {what} should be one whole number, got {vals[:8]}")
    return vals[0]


def _square(value: Any, what: str, where: str) -> int:
    vals = set(as_int(value, what, where))
    if len(vals) != 1:
        raise NIRError(f"{where}: {what} {sorted(vals)} differs between height and width; softspike's are square")
    return vals.pop()


class _Reader:
    """Walks the chain, appending spec layers and folding gains and offsets into weights."""

    def __init__(self, shape: list[int], dt: float, allow_short_tau: bool = False) -> None:
        self.shape: tuple[int, ...] = tuple(shape)
        self.dt = dt
        self.allow_short_tau = allow_short_tau
        self.layers: list[dict[str, Any]] = []
        self.weights: dict[int, _Weights] = {}
        self.last: _Weights | None = None

    def add(self, layer: dict[str, Any], shape: Sequence[int], weights: _Weights | None = None) -> None:
        if weights is not None:
            self.weights[len(self.layers)] = weights
            self.last = weights
        elif self.last is not None:
            self.last.passed.append(layer["type"])
        self.layers.append(layer)
        self.shape = tuple(int(d) for d in shape)

    def _target(self, what: str, where: str, per_neuron: bool) -> _Weights:
        w = self.last
        if w is None or any(p not in ("flatten", "avgpool2d") for p in w.passed):
            raise NIRError(f"{where}: {what} must follow a linear or conv layer to be folded into its weights, "
                           "with only flatten or pooling between")
        if per_neuron and w.passed:
            raise NIRError(f"{where}: {what} differs between neurons; it folds into weights only directly after "
                           "a linear or conv layer")
        return w

    def _per_output(self, value: np.ndarray, w: _Weights, what: str, where: str) -> np.ndarray:
        """A per-neuron value as one value per output channel (feature) of the weight layer."""
        out = w.weight.shape[0]
        try:
            full = np.broadcast_to(value, self.shape) if value.size != int(np.prod(self.shape)) else value
        except ValueError:
            raise NIRError(f"{where}: {what} has shape {list(value.shape)}, which does not fit the layer's "
                           f"{list(self.shape)}") from None
        full = full.reshape(self.shape)
        per = full.reshape(out, -1)
        if not np.allclose(per, per[:, :1]):
            raise NIRError(f"{where}: {what} varies within a channel; only per-channel values fold into a conv")
        return per[:, 0]

    def gain(self, value: Any, what: str, where: str) -> None:
        """Multiply this layer's input by `value` (scalar or per neuron): fold it into the weights."""
        arr = as_array(value, what, where)
        if np.allclose(arr, 1.0):
            return
        scalar = np.allclose(arr, arr.reshape(-1)[0])
        w = self._target(what, where, per_neuron=not scalar)
        g = np.full(w.weight.shape[0], arr.reshape(-1)[0]) if scalar else self._per_output(arr, w, what, where)
        w.weight = w.weight * g.reshape(-1, *([1] * (w.weight.ndim - 1)))
        if w.bias is not None:
            w.bias = w.bias * g

    def offset(self, value: Any, what: str, where: str) -> None:
        """Add `value` to this layer's input: fold it into the bias before it."""
        arr = as_array(value, what, where)
        if np.allclose(arr, 0.0):
            return
        w = self._target(what, where, per_neuron=True)
        o = self._per_output(arr, w, what, where)
        w.bias = (w.bias if w.bias is not None else np.zeros(w.weight.shape[0])) + o

    # -- one method per NIR node kind ------------------------------------------------------------
    def affine(self, weight: Any, bias: Any, where: str) -> None:
        w = as_array(weight, "weight", where)
        if w.ndim != 2:
            raise NIRError(f"{where}: weight of shape {list(w.shape)}; softspike's linear takes [out, in]")
        if self.shape != (w.shape[1],):
            raise NIRError(f"{where}: takes {w.shape[1]} features, but its input here is {list(self.shape)}"
                           + (" (a Flatten missing before it?)" if len(self.shape) == 3 else ""))
        b = None if bias is None else as_array(bias, "bias", where).reshape(-1)
        b = None if b is None or np.allclose(b, 0.0) else b
        self.add({"type": "linear", "out_features": int(w.shape[0]), "bias": b is not None}, [w.shape[0]],
                 _Weights(w, b))

    def conv2d(self, node: Any, where: str) -> None:
        w = as_array(node.weight, "weight", where)
        if len(self.shape) != 3 or w.ndim != 4 or w.shape[1] != self.shape[0]:
            raise NIRError(f"{where}: Conv2d with weight {list(w.shape)} does not fit its input {list(self.shape)}")
        if _one_int(node.groups, "groups", where) != 1 or _square(node.dilation, "dilation", where) != 1:
            raise NIRError(f"{where}: softspike's conv2d has groups 1 and dilation 1 "
                           f"(got groups {node.groups}, dilation {node.dilation})")
        k = _square(w.shape[2:], "kernel size", where)
        stride = _square(node.stride, "stride", where)
        pad: Any = node.padding
        if isinstance(pad, str):
            if pad == "same" and (stride != 1 or k % 2 == 0):
                raise NIRError(f"{where}: padding 'same' needs stride 1 and an odd kernel here")
            pad = k // 2 if pad == "same" else 0
        pad = _square(pad, "padding", where)
        _, h, wd = self.shape
        out = [w.shape[0], (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1]
        b = as_array(node.bias, "bias", where).reshape(-1) if node.bias is not None else None
        b = None if b is None or np.allclose(b, 0.0) else b
        self.add({"type": "conv2d", "out_channels": int(w.shape[0]), "kernel_size": k, "stride": stride,
                  "padding": pad, "bias": b is not None}, out, _Weights(w, b))

    def pool(self, node: Any, where: str, summed: bool) -> None:
        if len(self.shape) != 3:
            raise NIRError(f"{where}: pooling needs an image input [C, H, W], got {list(self.shape)}")
        k = _square(node.kernel_size, "kernel size", where)
        s = _square(node.stride, "stride", where)
        p = _square(node.padding, "padding", where)
        c, h, w = self.shape
        self.add({"type": "avgpool2d", "kernel_size": k, "stride": s, "padding": p},
                 [c, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1])
        if summed:  # sum = k² · mean, and a scalar passes back through the pooling to the weights
            self.gain(float(k * k), "SumPool2d's window sum", where)

    def flatten(self, node: Any, where: str) -> None:
        start, end = _one_int(node.start_dim, "start_dim", where), _one_int(node.end_dim, "end_dim", where)
        # 0 (NIR's own, no batch dim), 1 (torch-style writers, batch dim first) or -ndim (softspike's
        # export, which torch readers apply with or without a batch dim) all mean the whole sample.
        if end not in (-1, len(self.shape) - 1) or start not in (0, 1, -len(self.shape)):
            raise NIRError(f"{where}: Flatten from dim {start} to {end}; softspike flattens the whole "
                           "sample")
        self.add({"type": "flatten"}, [int(np.prod(self.shape))])

    def neuron(self, neuron: dict[str, Any], thr: Any, reset: Any, where: str, meta: Any = None) -> None:
        layer = {"type": "neuron", "neuron": neuron, "v_threshold": uniform(thr, "v_threshold", where),
                 "v_reset": 0.0 if reset is None else uniform(reset, "v_reset", where)}
        training = json_meta(meta, META_LAYER)  # a softspike export's surrogate and reset gradient
        layer.update({k: v for k, v in training.items() if k in ("surrogate", "detach_reset", "reset_grad")})
        self.add(layer, self.shape)

    def tau(self, value: Any, what: str, where: str) -> float:
        seconds = uniform(value, what, where)
        steps = seconds / self.dt
        at = f"{what} = {seconds:g} s is {steps:.3g} time steps at dt = {self.dt:g} s"
        if seconds <= 0:
            raise NIRError(f"{where}: {what} must be positive, got {seconds:g} s")
        if steps <= MIN_TAU_STEPS:
            raise NIRError(f"{where}: {at}; an Euler step of dt is unstable for a time constant of dt/2 or less "
                           "(the membrane oscillates and grows): give the dt the file's writer used (--dt)")
        if steps > MAX_TAU_STEPS:
            raise NIRError(f"{where}: {at}; beyond {MAX_TAU_STEPS:.3g} steps 1/tau underflows in float32 and the "
                           "neuron stops integrating: give the dt the file's writer used (--dt)")
        if steps < 1 and not self.allow_short_tau:
            raise NIRError(f"{where}: {at}, less than one step, so each step overshoots the membrane's target; "
                           "most likely the file was written with another dt: give it (--dt; for Norse 1.1's to_nir "
                           "see docs/nir.md), or import it as it is with --allow-short-tau (allow_short_tau=True)")
        return steps


def _read_node(r: _Reader, name: str, node: Any) -> None:
    nir = nir_module()

    where = f"node {name!r} ({type(node).__name__})"
    if isinstance(node, nir.Affine):
        r.affine(node.weight, node.bias, where)
    elif isinstance(node, nir.Linear):
        r.affine(node.weight, None, where)
    elif isinstance(node, nir.Conv2d):
        r.conv2d(node, where)
    elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        r.pool(node, where, summed=isinstance(node, nir.SumPool2d))
    elif isinstance(node, nir.Flatten):
        r.flatten(node, where)
    elif isinstance(node, nir.Scale):
        r.gain(node.scale, "Scale", where)
    elif isinstance(node, nir.IF):
        r.gain(node.r, "r", where)
        r.neuron({"type": "if"}, node.v_threshold, node.v_reset, where, node.metadata)
    elif isinstance(node, nir.LIF):
        reset = as_array(node.v_reset if node.v_reset is not None else 0.0, "v_reset", where)
        r.gain(node.r, "r", where)
        r.offset(as_array(node.v_leak, "v_leak", where) - reset, "v_leak - v_reset", where)
        tau = r.tau(node.tau, "tau", where)
        r.neuron({"type": "lif", "tau": tau}, node.v_threshold, node.v_reset, where, node.metadata)
    elif isinstance(node, nir.CubaLIF):
        if "cuba_lif" not in get_registry().neurons:
            raise NIRError(f"{where}: needs a current-based LIF neuron, and no 'cuba_lif' is registered here")
        reset = as_array(node.v_reset if node.v_reset is not None else 0.0, "v_reset", where)
        if not np.allclose(as_array(node.v_leak, "v_leak", where), reset):
            raise NIRError(f"{where}: v_leak differs from v_reset; softspike's cuba_lif leaks to its reset")
        r.gain(as_array(node.r, "r", where) * as_array(node.w_in, "w_in", where), "r·w_in", where)
        neuron = {"type": "cuba_lif", "tau_mem": r.tau(node.tau_mem, "tau_mem", where),
                  "tau_syn": r.tau(node.tau_syn, "tau_syn", where)}
        r.neuron(neuron, node.v_threshold, node.v_reset, where, node.metadata)
    elif isinstance(node, nir.Threshold):
        r.neuron({"type": "lif", "tau": 1.0}, node.threshold, 0.0, where)
    else:
        raise NIRError(f"{where}: NIR node type {type(node).__name__} has no softspike layer (supported: Affine, "
                       "Linear, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, IF, LIF, CubaLIF, Threshold)")


def import_nir(source: Any, *, dt: float | None = None, T: int | None = None, name: str | None = None,
               input_shape: Sequence[int] | None = None, allow_short_tau: bool = False) -> Imported:
    """A NIR graph (a nir.NIRGraph or a .nir path) as a softspike spec and built network.

    One time step lasts `dt` seconds (default: the dt a softspike export stored, else 1 ms), so a
    LIF with tau = 20 ms becomes τ = 20 steps at dt = 1 ms. `T`, the name, the encoder and the
    readout come from a softspike export's metadata where present; otherwise T defaults to 8, the
    encoder to "constant" (the input at every step) and the readout to the firing rate.

    A time constant shorter than one step is refused unless `allow_short_tau` (it most often means
    a wrong dt); one of dt/2 or less, where Euler steps diverge, always."""
    nir = nir_module()

    label = str(source) if isinstance(source, (str, Path)) else "<NIR graph>"
    graph = read_nir(source) if isinstance(source, (str, Path)) else source
    if not isinstance(graph, nir.NIRGraph):
        raise NIRError(f"{label}: expected a NIR graph, got {type(graph).__name__}")
    try:
        meta = read_metadata(getattr(graph, "metadata", None))
        stored = meta.softspike_spec or StoredSpec()
        dt = check_dt(dt if dt is not None else meta.softspike_dt if meta.softspike_dt is not None else DEFAULT_DT)
        chain = _chain(graph)
        shape_in = _input_shape(chain[0][1], input_shape or stored.input_shape)
        reader = _Reader(shape_in, dt, allow_short_tau)
        for node_name, node in chain[1:-1]:
            if isinstance(node, nir.NIRGraph):
                raise NIRError(f"node {node_name!r} is a nested graph; softspike imports flat graphs")
            _read_node(reader, node_name, node)
    except NIRError as err:
        raise NIRError(f"{label}: {err}") from None
    for index, w in reader.weights.items():  # an offset may have given a bias-free layer a bias
        reader.layers[index]["bias"] = w.bias is not None
    default_name = Path(label).stem if label != "<NIR graph>" else "nir_import"
    spec = {
        "name": name or stored.name or default_name,
        "input_shape": shape_in,
        "T": T or stored.T or DEFAULT_T,
        "encoder": stored.encoder or {"type": "constant"},
        "layers": reader.layers,
        "readout": stored.readout or {"type": "rate", "scale": 1.0},
    }
    if stored.description is not None:
        spec["description"] = stored.description
    checked = check_spec(spec, f"{label} (imported)")
    net = build(checked)
    modules = dict(net.layer_paths)
    with torch.no_grad():
        for index, w in reader.weights.items():
            inner: Any = modules[f"layers[{index}]"].get_submodule("module")  # the layer MultiStep wraps
            inner.weight.copy_(torch.from_numpy(w.weight))
            if w.bias is not None:
                inner.bias.copy_(torch.from_numpy(w.bias))
    return Imported(spec, checked, net.eval(), dt)
