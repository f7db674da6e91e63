"""Plots of what a monitor recorded, with matplotlib's object API (Agg: no display, no pyplot state).

    raster_figure(mon, sample=0)              spike raster, one panel per layer: time × neuron
    membrane_figure(mon, path, sample=0)      V(t) of a few neurons, the threshold dashed, spikes marked
    rate_histogram_figure(neuron_rates)       per layer, a histogram of the neurons' firing rates
    save_figure(fig, "raster.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from softspike.core.extras import require
from softspike.monitor.record import Monitor, MonitorError


def _figure(rows: int, height: float = 2.2, width: float = 7.0) -> tuple[Any, list[Any]]:
    figure = require("matplotlib.figure", "plot", "plotting (softspike.monitor, softspike plot)", "matplotlib")
    fig = figure.Figure(figsize=(width, max(2.5, height * rows)), layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    return fig, list(axes)


def _sample(x: Tensor, sample: int, path: str) -> Tensor:
    if not 0 <= sample < x.shape[1]:
        raise MonitorError(f"{path}: sample {sample} was not recorded (recorded samples: 0..{x.shape[1] - 1})")
    return x[:, sample]


def raster_figure(mon: Monitor, sample: int = 0, paths: Sequence[str] | None = None, title: str = "") -> Any:
    """A spike raster per layer for one sample: a dot at (step, neuron) for every spike."""
    paths = list(paths or mon.paths)
    fig, axes = _figure(len(paths))
    for ax, path in zip(axes, paths):
        s = _sample(mon.spikes(path), sample, path)  # [steps, neurons]
        t, n = s.nonzero(as_tuple=True)
        ax.scatter(t.numpy(), n.numpy(), s=36, marker="|", color="black", linewidths=1.2)
        ax.set_xlim(-0.5, s.shape[0] - 0.5)
        ax.set_ylim(-0.5, s.shape[1] - 0.5)
        ax.set_ylabel("neuron")
        ax.set_title(f"{path}: {s.shape[1]} neurons, rate {float(s.mean()):.3f}", fontsize=9)
    axes[-1].set_xlabel("time step")
    if title:
        fig.suptitle(title)
    return fig


def membrane_figure(mon: Monitor, path: str, sample: int = 0, neurons: int = 5) -> Any:
    """V(t) of the first `neurons` recorded neurons of one layer, with the threshold and the spikes."""
    v = _sample(mon.v(path), sample, path)
    s = _sample(mon.spikes(path), sample, path)
    fig, (ax,) = _figure(1, height=3.2)
    steps = range(v.shape[0])
    for i in range(min(neurons, v.shape[1])):
        line = ax.plot(steps, v[:, i].numpy(), lw=1.2, label=f"neuron {i}")[0]
        fired = s[: v.shape[0], i].nonzero(as_tuple=True)[0].numpy()
        ax.plot(fired, [mon.threshold(path)] * len(fired), "v", color=line.get_color(), ms=5)
    ax.axhline(mon.threshold(path), ls="--", color="gray", lw=1, label="threshold")
    ax.set_xlabel("time step")
    ax.set_ylabel("membrane V (after reset)")
    ax.set_title(f"{path}: membrane potential, sample {sample} (▼ spike)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def rate_histogram_figure(neuron_rates: Mapping[str, Tensor], bins: int = 20) -> Any:
    """One histogram of the neurons' firing rates per layer (how many are silent, how many saturate)."""
    if not neuron_rates:
        raise MonitorError("no firing rates recorded: run the network while the monitor is open")
    fig, axes = _figure(len(neuron_rates), height=1.8)
    for ax, (path, rates) in zip(axes, neuron_rates.items()):
        r = rates.reshape(-1).float().numpy()
        ax.hist(r, bins=bins, range=(0.0, 1.0), color="tab:blue")
        silent = float((r == 0).mean())
        ax.set_title(f"{path}: {r.size} neurons, mean {r.mean():.3f}, silent {100 * silent:.0f}%", fontsize=9)
        ax.set_ylabel("neurons")
    axes[-1].set_xlabel("firing rate (spikes per step)")
    return fig


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Write a figure (PNG, SVG or PDF by the file's suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
