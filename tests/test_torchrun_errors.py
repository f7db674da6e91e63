"""Errors of a `softspike train` job that torchrun started: said once (rank 0), exit 2 for the command
line and 1 for the rest, and named as the root cause in torchrun's own report (softspike.cli.ranks)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from softspike.cli import main, ranks

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline_runtime import torchrun
from test_pipeline_runtime_cli import write_files


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    return write_files(tmp_path)


def _train(files: Path, *extra: str) -> list[str]:
    return ["train", str(files / "spec.json"), "--pipeline", str(files / "plan.json"), "--quiet", *extra]


def _as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, agent: bool, error_file: Path) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(ranks.ERROR_FILE_ENV, str(error_file))
    if agent:
        monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    else:
        monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)


def _recorded(path: Path) -> str:
    data = json.loads(path.read_text())
    assert data["message"]["message"] == data["message"]["extraInfo"]["py_callstack"]
    assert int(data["message"]["extraInfo"]["timestamp"]) > 0
    return str(data["message"]["message"])


def test_rank_0_says_a_usage_error_and_records_it(files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _as_rank(monkeypatch, 0, agent=True, error_file=tmp_path / "error.json")
    with pytest.raises(SystemExit) as exit_:
        main(_train(files, "--dataset", f"npz:{files / 'd.npz'}", "--epochs", "x"))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: softspike train") and err.count("error:") == 1, err
    assert _recorded(tmp_path / "error.json") == "softspike train: error: argument --epochs: 'x' is not a whole number"


def test_other_ranks_stay_quiet_on_errors_every_rank_meets(files: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _as_rank(monkeypatch, 1, agent=False, error_file=tmp_path / "error.json")
    with pytest.raises(SystemExit) as exit_:
        main(_train(files, "--dataset", f"npz:{files / 'd.npz'}", "--epochs", "x"))
    assert exit_.value.code == 2
    assert main(_train(files, "--dataset", f"npz:{files / 'missing.npz'}")) == 1  # not a usage error: exit 1
    assert capsys.readouterr().err == ""
    assert not (tmp_path / "error.json").exists()


def test_rank_0_says_a_data_error_before_the_processes_meet(files: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _as_rank(monkeypatch, 0, agent=True, error_file=tmp_path / "error.json")
    assert main(_train(files, "--dataset", f"npz:{files / 'missing.npz'}")) == 1
    err = capsys.readouterr().err
    assert err.count("softspike train: error: npz:") == 1 and "no such file" in err and "Traceback" not in err
    assert _recorded(tmp_path / "error.json") == err.strip()


def test_a_quiet_rank_the_agent_does_not_stop_says_its_own_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    # Rank 0 met no such error (a stage file only rank 1 reads, say): the wait ends and rank 1 says it.
    _as_rank(monkeypatch, 1, agent=True, error_file=tmp_path / "error.json")
    monkeypatch.setattr(ranks, "QUIET_WAIT_S", 0.01)
    assert ranks.fail("softspike train: error: stage1-replica0.pt: unreadable", 1) == 1
    assert capsys.readouterr().err == "softspike train: error: stage1-replica0.pt: unreadable (rank 1)\n"
    assert _recorded(tmp_path / "error.json").endswith("(rank 1)")


def test_outside_a_job_errors_are_said_as_ever(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", ranks.ERROR_FILE_ENV, "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    assert ranks.launched_rank() is None
    monkeypatch.setenv("RANK", "1")  # without WORLD_SIZE, not a job's rank
    assert ranks.launched_rank() is None
    assert ranks.fail("softspike train: error: x", 2) == 2
    assert capsys.readouterr().err == "softspike train: error: x\n"


@pytest.mark.slow
def test_under_torchrun_a_usage_error_is_said_once_and_is_the_root_cause(files: Path) -> None:
    done = torchrun(2, "-m", "softspike", *_train(files, "--dataset", f"npz:{files / 'd.npz'}", "--epochs", "x"))
    message = "softspike train: error: argument --epochs: 'x' is not a whole number"
    lines = done.stderr.splitlines()
    assert done.returncode == 1  # torchrun's own status when a process fails
    assert sum(line.startswith("usage: softspike train") for line in lines) == 1, done.stderr
    assert lines.count(message) == 1, done.stderr  # printed by rank 0 alone
    root = done.stderr[done.stderr.index("Root Cause"):]
    assert "rank      : 0 (local_rank: 0)" in root and "exitcode  : 2" in root, root
    assert f"traceback : {message}" in root, root


def test_nproc_finds_a_missing_dataset_before_starting_processes(files: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`--nproc 2` with a dataset that is not there: one message from the launching process, exit 1, and
    no process started (torchrun's launcher is never called)."""
    from softspike.pipelines.running import launch

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(launch, "launch", lambda *a: pytest.fail("processes were started"))
    missing = tmp_path / "nowhere.npz"
    assert main(["train", str(files / "spec.json"), "--nproc", "2", "--quiet", "--dataset", f"npz:{missing}"]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"npz:{missing}: no such file" in err, err
