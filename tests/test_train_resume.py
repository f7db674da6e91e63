"""A training run killed by SIGKILL mid-epoch resumes from its last checkpoint to the same weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from childproc import PATIENCE, Child, child_env

pytestmark = pytest.mark.slow  # child processes (make test-fast leaves these out)

SPEC = {
    "name": "resume_net", "input_shape": [1, 16, 16], "T": 8, "encoder": {"type": "poisson"},
    "layers": [
        {"type": "flatten"},
        {"type": "dropout", "p": 0.1},
        {"type": "linear", "out_features": 256, "bias": False},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}},
        {"type": "linear", "out_features": 4, "bias": False},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}},
    ],
    "readout": {"type": "rate", "scale": 4.0},
}


def _write_data(path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 640)
    x = rng.integers(0, 100, (640, 16, 16)).astype(np.uint8)
    for k in range(4):  # a learnable pattern: class k lights up row band k
        x[y == k, 4 * k:4 * k + 4, :] += 150
    np.savez(path, x_train=x[:576], y_train=y[:576], x_test=x[576:], y_test=y[576:])


def _command(tmp: Path, ckpt: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "softspike", "train", str(tmp / "spec.json"), "--dataset", f"npz:{tmp / 'd.npz'}",
            "--epochs", "3", "--batch-size", "8", "--lr", "0.005", "--seed", "7", "--augment-shift", "1",
            "--checkpoint", str(tmp / ckpt), "--checkpoint-every", "4", "--quiet", *extra]


def _final(path: Path) -> dict[str, object]:
    return torch.load(path, weights_only=True)  # type: ignore[no-any-return]


def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    _write_data(tmp_path / "d.npz")

    full = subprocess.run(_command(tmp_path, "full"), env=child_env(), capture_output=True, text=True, timeout=PATIENCE)
    assert full.returncode == 0, full.stderr

    ckpt = tmp_path / "killed" / "last.pt"
    # Without --quiet and off a terminal, the run prints a progress line at every fifth of an epoch
    # (steps 14, 28, ... of 72), just before that step's checkpoint: the kill waits for one in epoch 2.
    killed = [a for a in _command(tmp_path, "killed") if a != "--quiet"]
    with Child(killed) as child:
        child.wait_for_line("stdout", r"^  epoch 2 step 28/72:")
        child.send(signal.SIGKILL)
        code, _, err = child.finish()
    assert code == -signal.SIGKILL, err[-3000:]
    at_kill = _final(ckpt)["log"]
    assert isinstance(at_kill, dict)
    assert at_kill["epoch"] == 1 and 24 <= at_kill["step"] < 72, at_kill  # mid-epoch 2 (0-based 1)
    print(f"killed at epoch {at_kill['epoch']}, step {at_kill['step']} of 72")

    resumed = subprocess.run(_command(tmp_path, "killed", "--resume"), env=child_env(), capture_output=True, text=True,
                             timeout=PATIENCE)
    assert resumed.returncode == 0, resumed.stderr

    a, b = _final(tmp_path / "full" / "last.pt"), _final(ckpt)
    model_a, model_b = a["model"], b["model"]
    assert isinstance(model_a, dict) and isinstance(model_b, dict)
    assert model_a.keys() == model_b.keys()
    for name in model_a:
        assert torch.equal(model_a[name], model_b[name]), name
    assert a["log"]["history"][-1]["test_accuracy"] == b["log"]["history"][-1]["test_accuracy"]  # type: ignore[index]
    assert a["log"]["history"][-1]["train_loss"] == pytest.approx(b["log"]["history"][-1]["train_loss"])  # type: ignore[index]
    assert a["log"]["history"][-1]["test_accuracy"] > 0.5  # type: ignore[index]
