"""Checkpoints: atomic writes, weights_only loading, resume rules, and `softspike evaluate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from softspike.cli import main
from softspike.core.errors import ParameterError
from softspike.train import CheckpointError, load_checkpoint, save_checkpoint
from softspike.train.checkpoint import atomic_write

SPEC: dict[str, Any] = {
    "name": "ck", "input_shape": [4], "T": 2, "encoder": {"type": "constant"},
    "layers": [{"type": "linear", "out_features": 3}, {"type": "neuron", "neuron": {"type": "if"}}],
    "readout": {"type": "rate", "scale": 2.0},
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x_train=rng.random((24, 4)).astype(np.float32), y_train=np.arange(24) % 3,
             x_test=rng.random((9, 4)).astype(np.float32), y_test=np.arange(9) % 3)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    return tmp_path


def _train(d: Path, *extra: str) -> int:
    return main(["train", str(d / "spec.json"), "--dataset", f"npz:{d / 'd.npz'}", "--epochs", "2", "--batch-size", "5",
                 "--lr", "0.05", "--checkpoint", str(d / "ck"), "--logdir", str(d / "log"), "--quiet", *extra])


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"x": torch.ones(3)})

    def crash(f: Any) -> None:
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash)
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_garbage_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="not a readable softspike checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a softspike checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "none.pt")


def test_train_writes_checkpoint_logs_and_metrics_then_evaluate_agrees(run_dir: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(run_dir) == 0
    state = load_checkpoint(run_dir / "ck" / "last.pt")
    assert json.loads(state["spec"])["name"] == "ck" and state["log"]["epoch"] == 2
    metrics = json.loads((run_dir / "log" / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["epochs"]] == [1, 2]
    capsys.readouterr()
    assert main(["evaluate", str(run_dir / "spec.json"), "--checkpoint", str(run_dir / "ck"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == metrics["final"]["test_accuracy"]  # constant input: deterministic


def test_resume_extends_a_finished_run_and_refuses_changed_settings(run_dir: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(run_dir) == 0
    assert _train(run_dir, "--resume", "--lr", "0.5") == 1
    assert "lr (checkpoint: 0.05, given: 0.5)" in capsys.readouterr().err
    assert main(["train", str(run_dir / "spec.json"), "--checkpoint", str(run_dir / "ck"), "--resume", "--epochs", "3",
                 "--quiet"]) == 0
    assert load_checkpoint(run_dir / "ck" / "last.pt")["log"]["epoch"] == 3


def test_a_checkpoint_of_another_spec_is_refused(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(run_dir) == 0
    other = dict(SPEC, layers=[{"type": "linear", "out_features": 3}, {"type": "neuron", "neuron": {"type": "lif"}}])
    (run_dir / "other.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["evaluate", str(run_dir / "other.json"), "--checkpoint", str(run_dir / "ck" / "last.pt")]) == 1
    assert "was made with a different spec" in capsys.readouterr().err


def test_resume_without_a_checkpoint_says_so(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(run_dir, "--resume") == 1
    assert "no checkpoint at" in capsys.readouterr().err


def test_bad_training_options_are_named(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The command line refuses them before torch runs (argparse: exit 2) ...
    with pytest.raises(SystemExit) as stop:
        _train(run_dir, "--batch-size", "0")
    assert stop.value.code == 2
    assert "argument --batch-size: 0 is out of range: give a whole number >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _train(run_dir, "--device", "nonsense")
    assert "'nonsense' is not a device softspike runs on" in capsys.readouterr().err
    # ... and the Python API by the same bounds.
    from softspike.models import check_spec
    from softspike.train import fit

    with pytest.raises(ParameterError, match="--batch-size: Input should be greater than or equal to 1"):
        fit(check_spec(SPEC), {"dataset": f"npz:{run_dir / 'd.npz'}", "batch_size": 0})
    with pytest.raises(ParameterError, match="is not a device softspike runs on"):
        fit(check_spec(SPEC), {"dataset": f"npz:{run_dir / 'd.npz'}", "device": "meta"})


def test_an_unwritable_checkpoint_directory_is_a_clear_error(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "ck").write_text("a file where the directory should be")
    assert _train(run_dir) == 1
    err = capsys.readouterr().err
    # (a layer-activity warning about the tiny network may come first)
    assert err.splitlines()[-1].startswith("softspike train: error: ") and "Traceback" not in err
