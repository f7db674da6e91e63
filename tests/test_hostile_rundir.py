"""Shared checkpoint directories: locked while a run writes, never silently taken over, checked
before training, cleaned of dead writers' temporary files; stored paths that work from anywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from softspike.cli import main
from softspike.train import load_checkpoint
from softspike.train.rundir import CheckpointDirLock
from test_train_checkpoint import SPEC, run_dir  # noqa: F401  (run_dir: the fixture `dirs` extends)


@pytest.fixture
def dirs(run_dir: Path) -> Path:  # noqa: F811  (test_train_checkpoint's data and spec, plus another)
    (run_dir / "other.json").write_text(json.dumps(dict(SPEC, name="other")))
    return run_dir


def _train(d: Path, spec: str = "spec.json", *extra: str) -> int:
    return main(["train", str(d / spec), "--dataset", f"npz:{d / 'd.npz'}", "--batch-size", "4",
                 "--checkpoint", str(d / "ck"), "--quiet", *extra])


def test_a_locked_checkpoint_directory_refuses_a_second_run(dirs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (dirs / "ck").mkdir()
    with CheckpointDirLock(dirs / "ck"):  # flock is per open file: this process counts as another run
        assert _train(dirs) == 1
        assert f"is in use by another run (pid {os.getpid()})" in capsys.readouterr().err
    assert _train(dirs) == 0  # released: the directory is free again
    assert _train(dirs, "spec.json", "--resume", "--epochs", "2") == 0


def test_another_specs_checkpoint_is_kept_unless_overwrite(dirs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _train(dirs) == 0
    before = (dirs / "ck" / "last.pt").read_bytes()
    assert _train(dirs, "other.json") == 1
    err = capsys.readouterr().err
    assert "holds another spec's run (network 'ck', this spec is 'other'); pass --overwrite" in err
    assert (dirs / "ck" / "last.pt").read_bytes() == before
    assert _train(dirs, "spec.json") == 0  # the same spec may start over
    assert _train(dirs, "other.json", "--overwrite") == 0
    assert json.loads(load_checkpoint(dirs / "ck" / "last.pt")["spec"])["name"] == "other"


def test_stale_temporary_files_of_dead_writers_are_removed(dirs: Path) -> None:
    (dirs / "ck").mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60, check=True)
    stale = dirs / "ck" / f".last.pt.tmp-{int(dead.stdout)}"
    live = dirs / "ck" / ".last.pt.tmp-1"  # pid 1 runs: its writer may still be writing
    stale.write_bytes(b"x" * 1000)
    live.write_bytes(b"y")
    assert _train(dirs) == 0
    assert not stale.exists() and live.exists()


def test_an_unusable_checkpoint_directory_is_found_before_training(dirs: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (dirs / "afile").write_text("not a directory")
    code = main(["train", str(dirs / "spec.json"), "--dataset", f"npz:{dirs / 'd.npz'}", "--quiet",
                 "--checkpoint", str(dirs / "afile" / "ck"), "--logdir", str(dirs / "log")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"checkpoint directory {dirs / 'afile' / 'ck'} is not writable" in err and "Traceback" not in err
    assert not (dirs / "log" / "metrics.json").exists()  # no epoch ran


def test_a_relative_npz_path_works_from_another_directory(dirs: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(dirs)
    assert main(["train", "spec.json", "--dataset", "npz:d.npz", "--checkpoint", "ck", "--quiet"]) == 0
    assert main(["train", "spec.json", "--dataset", "npz:d.npz", "--checkpoint", "ck", "--quiet", "--resume",
                 "--epochs", "2"]) == 0  # the same relative path on resume is the same dataset
    elsewhere = dirs / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", "../ck", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataset"] == f"npz:{dirs / 'd.npz'}"


def test_a_run_that_fails_before_training_releases_its_directory(dirs: Path) -> None:
    from softspike.models import load_spec
    from softspike.train import DatasetError, fit

    checked = load_spec(str(dirs / "spec.json"))
    with pytest.raises(DatasetError) as failed:  # the traceback (kept here, as a notebook keeps it) holds the frame
        fit(checked, {"dataset": f"npz:{dirs / 'missing.npz'}"}, checkpoint_dir=dirs / "ck")
    assert failed.value is not None
    fit(checked, {"dataset": f"npz:{dirs / 'd.npz'}", "progress": False}, checkpoint_dir=dirs / "ck", verbose=False)
