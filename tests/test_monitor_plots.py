"""Plots read back from disk: the raster, membrane and rate PNGs, `softspike plot`, and the images the
trainer writes to TensorBoard each epoch."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from softspike.cli import main
from softspike.core.extras import MissingExtraError
from softspike.models import build, check_spec
from softspike.monitor import Monitor, MonitorError, membrane_figure, raster_figure, rate_histogram_figure, save_figure

SPEC: dict[str, Any] = {
    "name": "plots", "input_shape": [1, 4, 4], "T": 6, "encoder": {"type": "constant"},
    "layers": [
        {"type": "flatten"},
        {"type": "linear", "out_features": 16},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "v_threshold": 0.3},
        {"type": "linear", "out_features": 3},
        {"type": "neuron", "neuron": {"type": "if"}, "v_threshold": 0.3},
    ],
    "readout": {"type": "rate", "scale": 4.0},
}


def _ink(png: Path | np.ndarray) -> float:
    """The share of dark pixels: a blank image has none."""
    img = imread(png) if isinstance(png, Path) else png
    return float((img[..., :3].mean(-1) < 0.5).mean())


def _monitored() -> Monitor:
    torch.manual_seed(0)
    net = build(check_spec(SPEC))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    with torch.no_grad(), Monitor(net, v=True) as mon:
        net(torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    return mon


def test_figures_are_written_and_read_back(tmp_path: Path) -> None:
    mon = _monitored()
    raster = save_figure(raster_figure(mon, title="raster"), tmp_path / "raster.png")
    trace = save_figure(membrane_figure(mon, "layers[2]", sample=1), tmp_path / "v.png")
    hist = save_figure(rate_histogram_figure(mon.neuron_rates()), tmp_path / "rates.png")
    for png in (raster, trace, hist):
        img = imread(png)
        assert img.shape[0] >= 250 and img.shape[1] >= 600 and img.shape[2] in (3, 4)
        assert _ink(png) > 0.002
    with pytest.raises(MonitorError, match=r"sample 2 was not recorded \(recorded samples: 0..1\)"):
        raster_figure(mon, sample=2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((30, 1, 4, 4)).astype(np.float32), y_train=np.arange(30) % 3,
             x_test=rng.random((6, 1, 4, 4)).astype(np.float32), y_test=np.arange(6) % 3)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    assert main(["train", str(tmp_path / "spec.json"), "--dataset", f"npz:{tmp_path / 'd.npz'}", "--epochs", "2",
                 "--batch-size", "10", "--lr", "0.05", "--checkpoint", str(tmp_path / "ck"), "--logdir",
                 str(tmp_path / "log"), "--quiet"]) == 0
    return tmp_path


def test_softspike_plot_draws_a_checkpoint(trained: Path, capsys: Any) -> None:
    out = trained / "raster.png"
    assert main(["plot", str(trained / "ck"), "--sample", "2", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and _ink(out) > 0.002
    assert main(["plot", str(trained / "ck" / "last.pt"), "--kind", "membrane", "--layer", "layers[4]",
                 "--out", str(trained / "v.png")]) == 0
    assert main(["plot", str(trained / "ck"), "--kind", "rates", "--count", "6", "--out", str(trained / "r.png")]) == 0
    assert _ink(trained / "v.png") > 0.002 and _ink(trained / "r.png") > 0.002
    assert main(["plot", str(trained / "ck"), "--sample", "6", "--out", str(out)]) == 1
    assert "outside the test split" in capsys.readouterr().err
    assert main(["plot", str(trained / "ck"), "--kind", "membrane", "--layer", "layers[3]", "--out", str(out)]) == 1
    assert "layers[3] is a Linear layer, not neurons" in capsys.readouterr().err


def test_the_trainer_adds_a_raster_and_rate_histograms_to_tensorboard(trained: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(trained / "log"), size_guidance={"images": 0})
    events.Reload()
    assert {"spikes/raster", "firing_rate/histogram"} <= set(events.Tags()["images"])
    for tag in ("spikes/raster", "firing_rate/histogram"):
        images = events.Images(tag)
        assert [i.step for i in images] == [1, 2]  # one per epoch
        img = imread(io.BytesIO(images[-1].encoded_image_string), format="png")
        assert img.shape[:2] == (images[-1].height, images[-1].width) and _ink(img) > 0.002


def test_without_matplotlib_plots_name_the_extra_and_training_logs_scalars_only(monkeypatch: Any) -> None:
    from softspike.monitor.board import add_epoch_images
    from softspike.train.data import ArraySplit
    from softspike.train.monitor import FiringRates

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    mon = _monitored()
    with pytest.raises(MissingExtraError, match=r"pip install 'softspike\[plot\]'"):
        raster_figure(mon)

    class Writer:
        def add_figure(self, *args: Any) -> None:
            raise AssertionError("no figure without matplotlib")

    split = ArraySplit(torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))
    with pytest.warns(UserWarning, match="the run logs scalars only"):
        add_epoch_images(Writer(), mon.net, split, FiringRates([]), 1)
