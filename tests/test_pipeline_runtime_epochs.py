"""A pipelined run equals one process epoch after epoch, with evaluation between (a Poisson encoder draws
random spikes in training and in evaluation), and a multi-process command line is checked in one place:
an argument error is said once (rank 0) and every process exits 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from softspike.cli import main
from softspike.models.load import check_spec
from softspike.train.loop import fit
from softspike.train.recipe import merged_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline_runtime import one_thread, torchrun  # noqa: F401 (one_thread: an autouse fixture)
from test_pipeline_runtime_cli import write_data, write_plan

#: Poisson input (random draws at every encoding), no batch norm: with M micro-batches the pipeline's
#: gradient is the whole batch's (DESIGN.md), so it equals one process step for step.
POISSON_SPEC: dict[str, Any] = {
    "name": "pp_poisson", "input_shape": [2, 8, 8], "T": 4, "encoder": {"type": "poisson"},
    "layers": [
        {"type": "flatten"},
        {"type": "linear", "out_features": 32},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "v_threshold": 0.25},
        {"type": "linear", "out_features": 5},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "v_threshold": 0.25},
    ],
    "readout": {"type": "rate", "scale": 2.0},
}
EPOCHS = 3


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    (tmp_path / "spec.json").write_text(json.dumps(POISSON_SPEC))
    write_data(tmp_path / "d.npz")  # 128 training samples (8 batches of 16), 32 test samples
    write_plan(tmp_path / "plan.json", POISSON_SPEC, 2, microbatches=2)
    return tmp_path


def _train(files: Path, *extra: str) -> list[str]:
    return ["train", str(files / "spec.json"), "--dataset", f"npz:{files / 'd.npz'}", "--quiet", *extra]


@pytest.mark.slow  # torchrun
def test_pipeline_equals_one_process_epoch_after_epoch(files: Path) -> None:
    """One process evaluates the 32 test samples in one batch, the pipeline in two of its batch shape;
    evaluation draws from its own stream, so training draws the same spikes in both every epoch."""
    common = ["--epochs", str(EPOCHS), "--batch-size", "16", "--lr", "0.05", "--optimizer", "sgd", "--seed", "5"]
    done = torchrun(2, "-m", "softspike", *_train(files, "--pipeline", str(files / "plan.json"), "--checkpoint",
                                                 str(files / "pp"), "--logdir", str(files / "logs"), *common))
    assert done.returncode == 0, done.stderr[-4000:]
    opts = {"dataset": f"npz:{files / 'd.npz'}", "epochs": EPOCHS, "batch_size": 16, "lr": 0.05, "optimizer": "sgd",
            "seed": 5, "progress": False}
    one = fit(check_spec(POISSON_SPEC), opts, checkpoint_dir=files / "one", verbose=False)
    pipe = json.loads((files / "logs" / "metrics.json").read_text())
    for a, b in zip(one["epochs"], pipe["epochs"], strict=True):  # every epoch: training and evaluation
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["epoch"], key)
    merged = merged_checkpoint(files / "pp")["model"]
    ref = torch.load(files / "one" / "last.pt", weights_only=True)["model"]
    assert set(merged) == set(ref)
    for name, value in ref.items():
        torch.testing.assert_close(merged[name], value, atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_argument_errors_are_said_once_and_exit_2(files: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    plan = str(files / "plan.json")
    conflict = "--microbatches 4 conflicts with the plan"
    for rank, said in (("0", True), ("1", False)):  # what each of two torchrun processes does
        monkeypatch.setenv("RANK", rank)
        assert main(_train(files, "--pipeline", plan, "--microbatches", "4")) == 2
        err = capsys.readouterr().err
        assert (conflict in err) is said and "Traceback" not in err
    monkeypatch.setenv("RANK", "0")
    assert main(_train(files, "--pipeline", plan, "--microbatches", "2", "--batch-size", "9")) == 2  # the plan's M
    assert "--batch-size 9 must split evenly" in capsys.readouterr().err
    assert main(_train(files, "--ddp", "--microbatches", "2")) == 2
    assert "--microbatches applies to pipelines" in capsys.readouterr().err
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert main(_train(files, "--microbatches", "2")) == 2  # one process: not silently ignored either
    assert "--microbatches applies to pipelines" in capsys.readouterr().err

    # --nproc checks before it starts any process.
    import torch.distributed.launcher.api as api

    def no_launch(*_: Any, **__: Any) -> Any:
        raise AssertionError("processes were started for a command line that cannot run")

    monkeypatch.setattr(api, "elastic_launch", no_launch)
    cases = [(["--nproc", "2", "--pipeline", plan, "--microbatches", "3"], conflict.replace("4", "3")),
             (["--nproc", "3", "--pipeline", plan], "the plan needs 2 processes"),
             (["--nproc", "2", "--batch-size", "10", "--microbatches", "4"], "--batch-size 10 must split evenly"),
             (["--nproc", "9"], "at most 5 pipeline stages"),
             (["--nproc", "2", "--ddp", "--batch-size", "7"], "--batch-size 7 must split evenly into 2 replicas"),
             (["--nproc", "2", "--resume"], "--resume needs --checkpoint DIR")]
    for extra, message in cases:
        assert main(_train(files, *extra)) == 2, extra
        assert message in capsys.readouterr().err, extra
