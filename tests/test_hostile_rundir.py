"""Shared checkpoint directories: locked while a run writes, never silently taken over, checked
before training, cleaned of dead writers' temporary files; stored paths that work from anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from softspike.cli import main
from softspike.train import load_checkpoint
from softspike.train.rundir import CheckpointDirLock

SPEC: dict[str, Any] = {
    "name": "rd", "input_shape": [4], "T": 2, "encoder": {"type": "constant"},
    "layers": [{"type": "linear", "out_features": 3}, {"type": "neuron", "neuron": {"type": "if"}}],
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x_train=rng.random((12, 4)).astype(np.float32), y_train=np.arange(12) % 3,
             x_test=rng.random((3, 4)).astype(np.float32), y_test=np.arange(3) % 3)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    (tmp_path / "other.json").write_text(json.dumps(dict(SPEC, name="other")))
    return tmp_path


def _train(d: Path, spec: str = "spec.json", *extra: str) -> int:
    return main(["train", str(d / spec), "--dataset", f"npz:{d / 'd.npz'}", "--batch-size", "4",
                 "--checkpoint", str(d / "ck"), "--quiet", *extra])


def test_a_locked_checkpoint_directory_refuses_a_second_run(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "ck").mkdir()
    with CheckpointDirLock(run_dir / "ck"):  # flock is per open file: this process counts as another run
        assert _train(run_dir) == 1
        assert f"is in use by another run (pid {os.getpid()})" in capsys.readouterr().err
    assert _train(run_dir) == 0  # released: the directory is free again
    assert _train(run_dir, "spec.json", "--resume", "--epochs", "2") == 0


def test_another_specs_checkpoint_is_kept_unless_overwrite(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(run_dir) == 0
    before = (run_dir / "ck" / "last.pt").read_bytes()
    assert _train(run_dir, "other.json") == 1
    err = capsys.readouterr().err
    assert "holds another spec's run (network 'rd', this spec is 'other'); pass --overwrite" in err
    assert (run_dir / "ck" / "last.pt").read_bytes() == before
    assert _train(run_dir, "spec.json") == 0  # the same spec may start over
    assert _train(run_dir, "other.json", "--overwrite") == 0
    assert json.loads(load_checkpoint(run_dir / "ck" / "last.pt")["spec"])["name"] == "other"


def test_stale_temporary_files_of_dead_writers_are_removed(run_dir: Path) -> None:
    (run_dir / "ck").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60, check=True)
    stale = run_dir / "ck" / f".last.pt.tmp-{int(dead.stdout)}"
    live = run_dir / "ck" / ".last.pt.tmp-1"  # pid 1 runs: its writer may still be writing
    stale.write_bytes(b"x" * 1000)
    live.write_bytes(b"y")
    assert _train(run_dir) == 0
    assert not stale.exists() and live.exists()


def test_an_unusable_checkpoint_directory_is_found_before_training(run_dir: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "afile").write_text("not a directory")
    code = main(["train", str(run_dir / "spec.json"), "--dataset", f"npz:{run_dir / 'd.npz'}", "--quiet",
                 "--checkpoint", str(run_dir / "afile" / "ck"), "--logdir", str(run_dir / "log")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"checkpoint directory {run_dir / 'afile' / 'ck'} is not writable" in err and "Traceback" not in err
    assert not (run_dir / "log" / "metrics.json").exists()  # no epoch ran


def test_a_relative_npz_path_works_from_another_directory(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(run_dir)
    assert main(["train", "spec.json", "--dataset", "npz:d.npz", "--checkpoint", "ck", "--quiet"]) == 0
    assert main(["train", "spec.json", "--dataset", "npz:d.npz", "--checkpoint", "ck", "--quiet", "--resume",
                 "--epochs", "2"]) == 0  # the same relative path on resume is the same dataset
    elsewhere = run_dir / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", "../ck", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == f"npz:{run_dir / 'd.npz'}"
