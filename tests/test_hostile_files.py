"""Files planted in a run directory: a link or a pipe where softspike writes never makes a run write
into another file; a full disk names the file that could not be written."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from softspike.cli import main
from softspike.pipelines.running.checkpoint import save_distributed
from softspike.train import checkpoint
from softspike.train.checkpoint import CheckpointError, atomic_write, load_checkpoint
from test_train_checkpoint import SPEC, run_dir  # noqa: F401  (the fixture: a tiny spec and dataset)

PRECIOUS = b"someone's file, not a checkpoint\n"


def _train(d: Path, *extra: str) -> int:
    return main(["train", str(d / "spec.json"), "--dataset", f"npz:{d / 'd.npz'}", "--batch-size", "4",
                 "--checkpoint", str(d / "ck"), "--quiet", *extra])


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "precious.txt"
    path.write_bytes(PRECIOUS)
    return path


@pytest.mark.parametrize("name", [".lock", "last.pt"])
def test_a_symlink_for_the_lock_or_checkpoint_is_refused(run_dir: Path, victim: Path, name: str,  # noqa: F811
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "ck").mkdir()
    (run_dir / "ck" / name).symlink_to(victim)
    assert _train(run_dir) == 1
    err = capsys.readouterr().err
    assert f"{run_dir / 'ck' / name} is a symbolic link; softspike never writes through one" in err, err
    assert victim.read_bytes() == PRECIOUS
    assert _train(run_dir, "--resume") == 1  # nor read through one
    assert victim.read_bytes() == PRECIOUS


def test_a_hard_linked_or_special_lock_file_is_refused(run_dir: Path, victim: Path,  # noqa: F811
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "ck").mkdir()
    os.link(victim, run_dir / "ck" / ".lock")
    assert _train(run_dir) == 1
    assert "is a hard link (2 names for one file)" in capsys.readouterr().err
    assert victim.read_bytes() == PRECIOUS
    (run_dir / "ck" / ".lock").unlink()
    os.mkfifo(run_dir / "ck" / ".lock")
    assert _train(run_dir) == 1
    assert "is not a regular file" in capsys.readouterr().err
    (run_dir / "ck" / ".lock").unlink()
    assert _train(run_dir) == 0  # the directory itself was fine


def test_a_planted_temporary_file_is_never_written_through(tmp_path: Path, victim: Path) -> None:
    target = tmp_path / "metrics.json"
    tmp = tmp_path / f".metrics.json.tmp-{os.getpid()}"  # the name this process's writer will use
    tmp.symlink_to(victim)
    atomic_write(target, lambda f: f.write(b"{}"))
    assert victim.read_bytes() == PRECIOUS and target.read_bytes() == b"{}" and not tmp.is_symlink()
    os.mkfifo(tmp)  # opening a pipe for writing would block forever
    atomic_write(target, lambda f: f.write(b"[]"))
    assert target.read_bytes() == b"[]" and not tmp.exists()


def test_a_symlink_at_a_written_file_is_replaced_never_written_through(run_dir: Path,  # noqa: F811
                                                                       victim: Path) -> None:
    # metrics.json, plan.json, distributed.json: written to a new temporary file, renamed over the name.
    log = run_dir / "log"
    log.mkdir()
    (log / "metrics.json").symlink_to(victim)
    assert _train(run_dir, "--logdir", str(log)) == 0
    assert victim.read_bytes() == PRECIOUS
    assert not (log / "metrics.json").is_symlink() and json.loads((log / "metrics.json").read_text())["final"]


def test_a_symlinked_pipeline_step_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "step-00000004").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(CheckpointError, match="step-00000004 is a symbolic link"):
        save_distributed(tmp_path / "ck", 4, None, "pipeline", 0, 0, {})  # type: ignore[arg-type]
    assert list(elsewhere.iterdir()) == []


class _FullDisk:
    """A file object on a disk that fills after `room` bytes."""

    def __init__(self, f: Any, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.f.close()


@pytest.mark.parametrize("room", [0, 200])  # full before the first byte; full inside torch's writer
def test_a_full_disk_names_the_checkpoint(run_dir: Path, room: int, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                          capsys: pytest.CaptureFixture[str]) -> None:
    fdopen = os.fdopen
    monkeypatch.setattr(checkpoint.os, "fdopen", lambda *a, **k: _FullDisk(fdopen(*a, **k), room))
    assert _train(run_dir) == 1
    path = run_dir / "ck" / "last.pt"
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"softspike train: error: {path}: No space left on device"
    assert sorted(p.name for p in (run_dir / "ck").iterdir()) == [".lock"]  # no temporary file left


def test_a_full_disk_at_fsync_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    atomic_write(tmp_path / "last.pt", lambda f: f.write(b"old"))
    monkeypatch.setattr(checkpoint.os, "fsync", full)
    with pytest.raises(OSError, match="No space left on device") as caught:
        checkpoint.save_checkpoint(tmp_path / "last.pt", {"n": 1})
    assert caught.value.filename == str(tmp_path / "last.pt")
    monkeypatch.undo()
    assert (tmp_path / "last.pt").read_bytes() == b"old"  # the previous file is whole
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "last.pt")
