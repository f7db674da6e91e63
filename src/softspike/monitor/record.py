"""Record what neuron layers do: spikes, membrane potential and firing rates, while a `with` lasts.

    with Monitor(net, ["layers[2]"], v=True, neurons=50) as mon:
        net(x)
    mon.spikes("layers[2]")   # [T, B, 50] on the CPU
    mon.v("layers[2]")        # [T, B, 50]: V(t) after fire and reset
    mon.rates()               # {"layers[2]": 0.12}, over every neuron
    mon.neuron_rates()        # {"layers[2]": tensor of the layer's neuron shape}

Spikes are taken by forward hooks: the layers run exactly as without a monitor. The membrane V is
opt-in (`v=True`): a multi-step neuron keeps no V on its fast path, so while the monitor is open a
layer whose V is asked for runs one step at a time through its public `single_step`, which leaves
V(t) in `.v` after every step; it gives the same spikes (the fused paths match the reference loop
bit for bit) and gradients still flow. On leaving the `with`, every layer is as before.

Memory stays bounded: records go to the CPU, only for the chosen layers, optionally only some
neurons (`neurons=N`, evenly spread, or a list of flat indices), every k-th step (`every=k`) and the
first samples of a batch (`samples=n`). Rates always count every neuron and step.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from softspike.core.errors import SoftspikeError
from softspike.core.neuron import Neuron
from softspike.train.monitor import FiringRates, time_batch_dims


class MonitorError(SoftspikeError, ValueError):
    """A monitor asked for a layer the network does not have, or for something it cannot record."""


@dataclass
class Trace:
    """What a monitor keeps of one neuron layer: chunks of [steps, samples, neurons] on the CPU."""

    path: str
    threshold: float
    index: dict[torch.device, Tensor] = field(default_factory=dict)  # the flat neuron indices kept, per device
    shape: tuple[int, ...] = ()  # the layer's neuron shape, once seen
    spikes: list[Tensor] = field(default_factory=list)
    v: list[Tensor] = field(default_factory=list)
    single_step: bool = False  # chunks are one step each: they join along time, else along batch
    calls: int = 0

    def join(self, chunks: list[Tensor], what: str) -> Tensor:
        if not chunks:
            hint = " (ask for it with v=True)" if what == "v" else ""
            raise MonitorError(f"{self.path}: no {what} recorded{hint}; run the network inside the `with` first")
        if self.single_step:
            return torch.cat(chunks, 0)
        if any(c.shape[0] != chunks[0].shape[0] for c in chunks):
            steps = sorted({c.shape[0] for c in chunks})
            raise MonitorError(f"{self.path}: the recorded calls have different numbers of steps ({steps}); "
                               "call reset() on the monitor between them")
        return torch.cat(chunks, 1)


def neuron_layers(net: nn.Module) -> list[tuple[str, Neuron]]:
    """The neuron layers of `net` by spec path (a spec-built network) or module name (any other)."""
    paths = getattr(net, "neuron_layers", None)
    if callable(paths):
        return list(paths())
    return [(name, m) for name, m in net.named_modules() if isinstance(m, Neuron)]


def _kind(module: nn.Module) -> str:
    """The torch layer a spec layer is (`Linear` for softspike's SpikeLinear, inside its MultiStep)."""
    inner = getattr(module, "module", module)
    return next((c.__name__ for c in type(inner).__mro__ if c.__module__.startswith("torch.nn")),
                type(inner).__name__)


def _choose(net: nn.Module, layers: Sequence[str] | str | None) -> list[tuple[str, Neuron]]:
    found = neuron_layers(net)
    if not found:
        raise MonitorError(f"{type(net).__name__} has no neuron layers to monitor")
    if layers is None:
        return found
    by_name = dict(found)
    wanted = [layers] if isinstance(layers, str) else list(layers)
    out = []
    for name in wanted:
        if name not in by_name:
            others = dict(getattr(net, "layer_paths", []))
            what = f"{name} is a {_kind(others[name])} layer, not neurons" if name in others else (
                f"no neuron layer {name!r}")
            close = difflib.get_close_matches(name, list(by_name), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close and name not in others else ""
            raise MonitorError(f"{what}{hint} (neuron layers: {', '.join(by_name)})")
        out.append((name, by_name[name]))
    return out


def _spread(n: int, count: int, device: torch.device) -> Tensor:
    """`count` (at most n) evenly spread indices in [0, n), made on `device` from integers alone
    (nothing on the CPU): k·(n-1)/(m-1) for k < m, rounded half to even, the values
    torch.linspace(0, n - 1, m).round().unique() gave (a step >= 1: no repeats, no `unique`)."""
    m = min(count, n)
    k = torch.arange(m, dtype=torch.long, device=device) * (n - 1)
    d = max(m - 1, 1)
    q, r = k // d, k % d
    return q + ((2 * r > d) | ((2 * r == d) & (q % 2 == 1))).long()


class Monitor:
    """Record spikes (and, with `v=True`, membrane potentials) of a network's neuron layers.

    `layers`: spec paths like "layers[2]" (or module names for a hand-built network); default all.
    `neurons`: keep N evenly spread neurons per layer, or these flat indices; default all.
    `every`: keep every k-th time step. `samples`: keep the first n samples of each batch."""

    def __init__(self, net: nn.Module, layers: Sequence[str] | str | None = None, *, v: bool = False,
                 neurons: int | Sequence[int] | None = None, every: int = 1, samples: int | None = None) -> None:
        if every < 1:
            raise MonitorError(f"every must be >= 1 (keep every k-th step), got {every}")
        if samples is not None and samples < 1:
            raise MonitorError(f"samples must be >= 1 or None (all), got {samples}")
        if isinstance(neurons, int) and neurons < 1:
            raise MonitorError(f"neurons must be >= 1, a list of indices, or None (all), got {neurons}")
        self.net, self.record_v = net, v
        self.neurons, self.every, self.samples = neurons, every, samples
        self.layers = _choose(net, layers)
        self.traces = {name: Trace(name, float(m.v_threshold)) for name, m in self.layers}
        self.firing = FiringRates(self.layers, per_neuron=True, training_only=False)
        self._handles: list[RemovableHandle] = []
        self._stepwise: list[Neuron] = []
        for name, module in self.layers:
            if v and module.step_mode == "m":
                if "forward" in vars(module):
                    self.close()
                    raise MonitorError(f"{name}: another open monitor already records its membrane potential")
                module.forward = self._stepwise_forward(module, self.traces[name])  # type: ignore[method-assign,assignment]
                self._stepwise.append(module)
            self._handles.append(module.register_forward_hook(self._hook(self.traces[name], v)))

    # -- recording ------------------------------------------------------------------------------
    def _index(self, trace: Trace, n: int, device: torch.device) -> Tensor | None:
        """The kept neuron indices as a tensor on `device`, made once per device (not copied to the
        device at every call) and chosen without a host read."""
        if self.neurons is None:
            return None
        on = trace.index.get(device)
        if on is None:
            if isinstance(self.neurons, int):
                on = _spread(n, self.neurons, device)
            else:
                given = [int(i) for i in self.neurons]
                if any(not 0 <= i < n for i in given):
                    raise MonitorError(f"{trace.path}: neuron indices must lie in [0, {n}), got {given}")
                on = torch.tensor(given, dtype=torch.long, device=device)  # a given list: via the CPU, once
            trace.index[device] = on
        return on

    def _keep(self, trace: Trace, x: Tensor, lead: int) -> Tensor:
        """[T, B, ...] or [B, ...] -> [steps, samples, kept neurons], detached, on the CPU."""
        x = x.detach()
        if lead == 1:
            x = x.unsqueeze(0)
        trace.shape = tuple(x.shape[2:])
        x = x.flatten(2) if x.dim() > 2 else x.unsqueeze(-1)
        if self.samples is not None:
            x = x[:, : self.samples]
        if self.every > 1 and lead == 2:
            x = x[:: self.every]
        idx = self._index(trace, x.shape[2], x.device)
        if idx is not None:
            x = x.index_select(2, idx)
        return x.to("cpu", copy=True)

    def _hook(self, trace: Trace, record_v: bool) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Tensor) -> None:
            lead = time_batch_dims(module)
            trace.single_step = lead == 1
            trace.calls += 1
            if lead == 1 and (trace.calls - 1) % self.every:
                return  # single-step: one call per step, keep every k-th
            trace.spikes.append(self._keep(trace, out, lead))
            v = getattr(module, "v", None)
            if record_v and lead == 1 and isinstance(v, Tensor):
                trace.v.append(self._keep(trace, v, 1))

        return hook

    def _stepwise_forward(self, neuron: Neuron, trace: Trace) -> Callable[[Tensor], Tensor]:
        """The layer's forward while V is recorded: one public `single_step` per time step."""

        def forward(x_seq: Tensor) -> Tensor:
            neuron.reset()
            spikes, vs = [], []
            try:
                for x in x_seq:
                    spikes.append(neuron.single_step(x))
                    vs.append(neuron.v)
            finally:
                neuron.reset()  # multi-step layers keep no state between calls
            trace.v.append(self._keep(trace, torch.stack(vs), 2))  # type: ignore[arg-type]
            return torch.stack(spikes)

        return forward

    # -- reading --------------------------------------------------------------------------------
    def _trace(self, path: str) -> Trace:
        if path not in self.traces:
            raise MonitorError(f"layer {path!r} is not monitored (monitored: {', '.join(self.traces)})")
        return self.traces[path]

    @property
    def paths(self) -> list[str]:
        return list(self.traces)

    def spikes(self, path: str) -> Tensor:
        """Recorded spikes of one layer: [steps, samples, neurons kept] (float 0/1, CPU)."""
        trace = self._trace(path)
        return trace.join(trace.spikes, "spikes")

    def v(self, path: str) -> Tensor:
        """Recorded membrane potential V(t) after fire and reset: [steps, samples, neurons kept]."""
        trace = self._trace(path)
        return trace.join(trace.v, "v")

    def threshold(self, path: str) -> float:
        return self._trace(path).threshold

    def rates(self) -> dict[str, float]:
        """Mean firing rate of each layer over everything run since the last reset."""
        return self.firing.rates()

    def neuron_rates(self) -> dict[str, Tensor]:
        """Each neuron's firing rate, per layer (CPU tensors of the layer's neuron shape)."""
        return self.firing.neuron_rates()

    def reset(self) -> None:
        """Forget what was recorded (the hooks stay)."""
        for trace in self.traces.values():
            trace.spikes.clear()
            trace.v.clear()
            trace.calls = 0
        self.firing.reset()

    def close(self) -> None:
        """Remove the hooks and give the layers their own forward back."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for module in self._stepwise:
            del module.forward  # the instance attribute; the class's forward shows again
        self._stepwise.clear()
        self.firing.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
