"""Monitors and plots: record neuron layers' spikes, membrane potentials and firing rates; draw them.

>>> import torch
>>> from softspike.models import build, load_spec
>>> from softspike.monitor import Monitor, raster_figure
>>> net = build(load_spec("mnist_fc"))
>>> with Monitor(net, ["layers[2]"], v=True, neurons=20) as mon:
...     _ = net(torch.rand(2, 1, 28, 28))
>>> mon.spikes("layers[2]").shape
torch.Size([8, 2, 20])

See docs/monitors.md.
"""

from softspike.monitor.plot import membrane_figure, raster_figure, rate_histogram_figure, save_figure
from softspike.monitor.record import Monitor, MonitorError, Trace, neuron_layers

__all__ = [
    "Monitor",
    "MonitorError",
    "Trace",
    "membrane_figure",
    "neuron_layers",
    "raster_figure",
    "rate_histogram_figure",
    "save_figure",
]
