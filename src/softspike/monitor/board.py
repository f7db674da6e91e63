"""TensorBoard images each epoch: a spike raster of one test sample and the rate histograms."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from softspike.train.monitor import FiringRates


def add_epoch_images(writer: Any, net: Any, split: Any, rates: FiringRates, step: int,
                     device: torch.device | str = "cpu") -> None:
    """Add `spikes/raster` (the first sample of `split`, an ArraySplit) and `firing_rate/histogram`
    (the epoch's per-neuron rates, from the trainer's `rates` monitor) to a SummaryWriter.

    Leaves the training's random state as it was (the encoder may draw random numbers), so a run
    writes the same weights with or without a log directory."""
    if writer is None or len(split) == 0:
        return
    # Imported here: the trainer imports this module, and the monitor builds on the trainer's FiringRates.
    from softspike.core.extras import MissingExtraError, require
    from softspike.monitor.plot import raster_figure, rate_histogram_figure
    from softspike.monitor.record import Monitor

    try:
        require("matplotlib.figure", "plot", "TensorBoard images (raster, rate histograms)", "matplotlib")
    except MissingExtraError as err:
        warnings.warn(f"{err}; the run logs scalars only", stacklevel=2)
        return

    x, _ = split.batch(torch.arange(1), device)
    was_training = net.training
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), Monitor(net, neurons=200) as mon:
        net.eval()
        net.spikes(x)
    net.train(was_training)
    writer.add_figure("spikes/raster", raster_figure(mon, title=f"epoch {step}"), step)
    per_neuron = rates.neuron_rates()
    if per_neuron:
        writer.add_figure("firing_rate/histogram", rate_histogram_figure(per_neuron), step)
    writer.flush()
