"""`softspike train --pipeline/--ddp/--nproc`: clear errors before any process group, and a pipelined run
killed mid-way (one rank SIGKILLed) that resumes from its last complete checkpoint to the weights of one
process."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from childproc import Child, child_env
from softspike.cli import main
from softspike.models.load import check_spec
from softspike.pipelines.planning.document import PLAN_FORMAT, PipelinePlan, StagePlan, spec_digest
from softspike.train.loop import fit

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline_runtime import one_thread, torchrun  # noqa: F401 (one_thread: an autouse fixture)
from test_pipeline_runtime_worker import SPEC


def write_plan(path: Path, spec: dict[str, Any], split: int, microbatches: int = 1, batch: int = 16) -> None:
    n = len(spec["layers"])
    stages = [StagePlan(index=i, device="cpu", blocks=[f"layers[{j}]" for j in range(a, b)], start=a, stop=b,
                        predicted_time_ms=1.0, predicted_memory_bytes=1000, boundary_bytes=0)
              for i, (a, b) in enumerate([(0, split), (split, n)])]
    plan = PipelinePlan(format=PLAN_FORMAT, spec_name=spec["name"], spec_sha256=spec_digest(check_spec(spec)),
                        n_blocks=n, batch_size=batch, microbatches=microbatches, schedule="gpipe", T=spec["T"],
                        stages=stages, predicted_step_ms=2.0, predicted_bubble=0.5, predicted_images_per_s=1.0)
    path.write_text(plan.to_json())


def write_data(path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 160)
    x = rng.integers(0, 100, (160, 2, 8, 8)).astype(np.uint8)
    for k in range(5):
        x[y == k, :, k, :] += 150
    np.savez(path, x_train=x[:128], y_train=y[:128], x_test=x[128:], y_test=y[128:])


def write_files(folder: Path) -> Path:
    """The spec, its data and a 2-stage plan (cut after block 4) in `folder`."""
    (folder / "spec.json").write_text(json.dumps(SPEC))
    write_data(folder / "d.npz")
    write_plan(folder / "plan.json", SPEC, 4)
    return folder


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    return write_files(tmp_path)


def _train(files: Path, *extra: str) -> list[str]:
    return ["train", str(files / "spec.json"), "--dataset", f"npz:{files / 'd.npz'}", "--quiet", *extra]


def test_errors_come_before_any_process_group(files: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert main(_train(files, "--pipeline", str(files / "plan.json"))) == 2
    assert "start them with `torchrun --nproc-per-node N" in capsys.readouterr().err

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert main(_train(files, "--pipeline", str(files / "plan.json"))) == 2
    assert "the plan needs 2 processes (2 stages x 1 replicas), the world has 3" in capsys.readouterr().err

    other = {**SPEC, "name": "other", "T": 2}
    write_plan(files / "other.json", other, 4)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(_train(files, "--pipeline", str(files / "other.json"))) == 2
    assert "the plan was made for spec 'other', not 'pp_net'" in capsys.readouterr().err

    (files / "bad.json").write_text('{"format": "softspike-pipeline-plan/1", "stages": []}')
    assert main(_train(files, "--pipeline", str(files / "bad.json"))) == 2
    assert "invalid pipeline plan" in capsys.readouterr().err

    write_plan(files / "m4.json", SPEC, 4, microbatches=4)
    assert main(_train(files, "--pipeline", str(files / "m4.json"), "--batch-size", "10")) == 2
    assert "--batch-size 10 must split evenly into 1 replicas x 4 micro-batches" in capsys.readouterr().err

    assert main(_train(files, "--nproc", "2", "--pipeline", str(files / "plan.json"))) == 2
    assert "under torchrun, leave --nproc out" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_kill_one_rank_then_resume_reaches_the_weights_of_one_process(files: Path) -> None:
    # SGD: Adam would turn the rounding noise of a zero gradient (a conv bias before batch norm) into steps.
    common = ["--epochs", "4", "--batch-size", "16", "--lr", "0.05", "--optimizer", "sgd", "--checkpoint-every", "2"]
    ck = files / "ck"
    env = child_env(SOFTSPIKE_DIST_TIMEOUT="60", PYTHONWARNINGS="ignore")
    # Started through torch's elastic launcher (--nproc); one worker is SIGKILLed after the first checkpoint.
    cmd = [sys.executable, "-m", "softspike", *_train(files, "--nproc", "2", "--pipeline", str(files / "plan.json"),
                                                     "--checkpoint", str(ck), *common)]
    with Child(cmd, env=env) as child:
        workers: list[int] = []

        def first_set_written() -> bool:  # the marker names a complete set; the launcher's children are the ranks
            workers[:] = _children(child.pid) if (ck / "distributed.json").exists() else []
            return bool(workers)

        child.wait_until(first_set_written, "the first complete checkpoint set")
        os.kill(workers[-1], signal.SIGKILL)
        code, _, err = child.finish()
    assert code == 1, err[-3000:]
    assert "softspike train: error: 2 processes:" in err
    marker = json.loads((ck / "distributed.json").read_text())
    step_dir = ck / marker["step_dir"]
    assert sorted(p.name for p in step_dir.iterdir()) == ["stage0-replica0.pt", "stage1-replica0.pt"]
    assert len(list(ck.glob("step-*"))) <= 2  # old sets are removed once a newer one is complete

    logdir = files / "logs"
    done = torchrun(2, "-m", "softspike", *_train(files, "--pipeline", str(files / "plan.json"), "--checkpoint",
                                                 str(ck), "--resume", "--logdir", str(logdir), *common))
    assert done.returncode == 0, done.stderr[-4000:]
    assert "pp_net: test accuracy" in done.stdout
    merged: dict[str, torch.Tensor] = {}
    final = ck / json.loads((ck / "distributed.json").read_text())["step_dir"]
    for part in final.iterdir():
        merged.update(torch.load(part, weights_only=True)["model"])

    opts = {"dataset": f"npz:{files / 'd.npz'}", "epochs": 4, "batch_size": 16, "lr": 0.05, "optimizer": "sgd",
            "progress": False}
    fit(check_spec(SPEC), opts, checkpoint_dir=files / "one", verbose=False)
    one = torch.load(files / "one" / "last.pt", weights_only=True)["model"]
    assert set(merged) == set(one)
    for name, value in one.items():
        torch.testing.assert_close(merged[name], value, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    metrics = json.loads((logdir / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 4
    stages = metrics["distributed"]["processes"]
    assert [s["stage"] for s in stages] == [0, 1]
    assert all(s["measured_time_ms"] > 0 and s["predicted_time_ms"] == 1.0 for s in stages)
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1  # TensorBoard written by one rank


def test_evaluate_reads_a_pipeline_checkpoint(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`softspike evaluate` merges the stages' files of the last complete set into one network."""
    from softspike.pipelines.running.checkpoint import MARKER

    opts = {"dataset": f"npz:{files / 'd.npz'}", "epochs": 1, "batch_size": 16, "progress": False}
    metrics = fit(check_spec(SPEC), opts, checkpoint_dir=files / "one", verbose=False)
    whole = torch.load(files / "one" / "last.pt", weights_only=True)
    step = files / "ck" / "step-00000008"  # the stage files a 2-stage run writes: the network cut at block 4
    step.mkdir(parents=True)
    for stage, (a, b) in enumerate([(0, 4), (4, 8)]):
        part = {k: v for k, v in whole["model"].items() if a <= int(k.split(".")[1]) < b}
        torch.save({**whole, "model": part}, step / f"stage{stage}-replica0.pt")
    (files / "ck" / MARKER).write_text(json.dumps({"step_dir": step.name, "stages": [[0, 4], [4, 8]]}))
    assert main(["evaluate", str(files / "spec.json"), "--checkpoint", str(files / "ck"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == metrics["final"]["test_accuracy"]
