"""Training that says when it goes wrong: NaN weights or loss stop the run (checkpoint intact);
silent or saturated layers are warned about once, by spec path."""

from __future__ import annotations

import copy
import functools
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import softspike.train.health as health
import softspike.train.loop as loop
from softspike.models import check_spec
from softspike.train import fit
from softspike.train.checkpoint import load_checkpoint
from softspike.train.health import LayerActivityWarning, TrainingDiverged

BASE: dict[str, Any] = {
    "name": "tiny", "input_shape": [1, 28, 28], "T": 4, "encoder": {"type": "poisson"},
    "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 32},
               {"type": "neuron", "neuron": {"type": "if"}},
               {"type": "linear", "out_features": 10}, {"type": "neuron", "neuron": {"type": "if"}}],
    "readout": {"type": "rate", "scale": 4.0},
}
OPTS: dict[str, Any] = {"dataset": "mnist_mini", "train_subset": 320, "batch_size": 32, "test_batch_size": 2000,
                        "epochs": 1, "lr": 1e-3, "progress": False}


def spec(**neuron: Any) -> Any:
    s = copy.deepcopy(BASE)
    s["layers"][2].update(neuron)
    return check_spec(s, "<test>")


def test_nan_weights_stop_the_run_naming_the_layer_and_keep_the_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights poisoned after step 5 (the loss stays finite: NaN never fires): caught before the step-6 save."""
    make = loop.make_optimizer

    def poisoning(net: Any, cfg: Any) -> torch.optim.Optimizer:
        opt = make(net, cfg)
        calls = [0]

        def poison(*_: Any) -> None:
            calls[0] += 1
            if calls[0] == 5:
                with torch.no_grad():
                    next(net.layer_paths[3][1].parameters())[0, 0] = float("nan")

        opt.register_step_post_hook(poison)
        return opt

    monkeypatch.setattr(loop, "make_optimizer", poisoning)
    with pytest.raises(TrainingDiverged) as err:
        fit(spec(), {**OPTS, "checkpoint_every": 2}, checkpoint_dir=tmp_path, verbose=False)
    text = str(err.value)
    assert "epoch 1, step 6 of 10" in text and "after global step 4" in text  # found by the check before saving
    assert "the first such layer is layers[1] (SpikeLinear): weight (" in text  # the NaN spread backwards in step 6 ...
    assert "; then layers[3] (SpikeLinear): weight (" in text  # ... from here
    assert str(tmp_path / "last.pt") in text
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["log"]["step"] == 4  # the step-4 checkpoint, written before the weights went bad
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def nan_loss_at(call: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The training loss of the `call`-th step (counting from 1) becomes NaN."""
    real = loop.readout_loss
    calls = [0]

    def loss(*a: Any) -> torch.Tensor:
        calls[0] += 1
        out = real(*a)
        return out * float("nan") if calls[0] == call else out

    monkeypatch.setattr(loop, "readout_loss", loss)


def test_a_nan_loss_stops_before_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    nan_loss_at(3, monkeypatch)
    with pytest.raises(TrainingDiverged, match=r"step 3 of 10 \(global step 3\): the loss is nan; every parameter"):
        fit(spec(), OPTS, verbose=False)


def test_a_deferred_nan_loss_is_named_by_its_step_and_never_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU way (forced here on the CPU): the loss check stays on the device and is read before the
    step-4 save, which it refuses; the message names step 3, the step-2 checkpoint stays."""
    nan_loss_at(3, monkeypatch)
    monkeypatch.setattr(loop, "TrainingHealth", functools.partial(health.TrainingHealth, defer=True))
    with pytest.raises(TrainingDiverged) as err:
        fit(spec(), {**OPTS, "checkpoint_every": 2}, checkpoint_dir=tmp_path, verbose=False)
    text = str(err.value)
    assert "training stopped at epoch 1, step 4 of 10" in text
    assert "the loss became NaN or infinite at epoch 1, step 3 of 10 (global step 3)" in text
    assert "the weights it reached are non-finite now, first in layers[1] (SpikeLinear)" in text
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["log"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_the_loss_check_reads_nothing_per_step_off_the_cpu() -> None:
    """On (fake) CUDA a step's health check makes no host read; the read comes with the parameter check."""
    from softspike.models import build
    from softspike.testing.devices import DeviceAudit, fake_cuda

    with fake_cuda():
        with torch.device("cuda"):
            net = build(spec())
        checks = health.TrainingHealth(net, steps_per_epoch=10, every=4)
        x = torch.rand(2, 1, 28, 28, device="cuda")
        with DeviceAudit() as audit:
            for step in range(3):
                checks.step(torch.rand((), device="cuda"), 0, step, x)
        assert audit.problems() == [] and checks.bad_loss_at is not None
        with DeviceAudit() as audit, pytest.raises(Exception, match="_local_scalar_dense"):
            checks.step(torch.rand((), device="cuda"), 0, 3, x)  # step 4: the check is read (fake tensors cannot)
        assert [e.function for e in audit.host_reads] == ["_check_losses"]


@pytest.mark.parametrize(("neuron", "state", "hint"), [
    ({"v_threshold": 1e6}, "silent: no neuron spiked", "lower v_threshold"),
    ({"v_threshold": -1e6}, "saturated: every neuron spiked at every step", "raise v_threshold"),
])
def test_a_dead_or_saturated_layer_is_warned_once_by_path(neuron: dict[str, Any], state: str, hint: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(spec(**neuron), {**OPTS, "epochs": 2}, verbose=False)
    mine = [str(w.message) for w in caught if issubclass(w.category, LayerActivityWarning)]
    about = [m for m in mine if m.startswith("layers[2] ")]
    assert len(about) == 1, mine  # once per run, not once per epoch
    assert state in about[0] and hint in about[0] and "epoch 1" in about[0]


def test_a_healthy_run_warns_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerActivityWarning)
        fit(spec(), OPTS, verbose=False)


def test_the_cli_prints_a_layer_warning_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from softspike.cli import main

    path = tmp_path / "silent.json"
    path.write_text(json.dumps({**BASE, "layers": [*BASE["layers"][:2], {**BASE["layers"][2], "v_threshold": 1e6},
                                                   *BASE["layers"][3:]]}))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["train", str(path), "--dataset", "mnist_mini", "--train-subset", "64", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "softspike train: warning: layers[2] was silent: no neuron spiked" in err
    assert "health.end_epoch" not in err  # no source excerpt
