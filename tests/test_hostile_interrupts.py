"""Ctrl-C at any moment: "interrupted", exit 130, no traceback, and a whole checkpoint.

Each test runs its victim in a child process with a hard timeout, so a hang fails the test."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from softspike.cli import main
from softspike.train.checkpoint import load_checkpoint, validate_checkpoint
from softspike.train.trained import load_trained

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


WRITE_LOOP = textwrap.dedent("""
    import collections, json, os, random, signal, sys, threading, time
    import torch
    from softspike.train.checkpoint import load_checkpoint, save_checkpoint
    torch.set_num_threads(1)
    path, state = sys.argv[1], {"w": torch.randn(2_000_000), "n": 0}
    save_checkpoint(path, state)
    t0 = time.perf_counter(); save_checkpoint(path, state); took = time.perf_counter() - t0
    seen, rng = collections.Counter(), random.Random(0)
    for i in range(1, int(sys.argv[2]) + 1):
        state["n"] = i
        timer = threading.Timer(rng.uniform(0, took), os.kill, (os.getpid(), signal.SIGINT))
        try:
            timer.start()
            save_checkpoint(path, state)
            timer.join()
            seen["finished"] += 1
        except KeyboardInterrupt:
            seen["interrupted"] += 1
        except Exception as err:  # what the write gave before SIGINT was deferred: a RuntimeError
            seen[type(err).__name__] += 1
        try:  # a signal that landed after the write reaches the next bytecode here
            timer.join()
            time.sleep(0.002)
        except KeyboardInterrupt:
            seen["finished"] += 1
        assert load_checkpoint(path)["n"] == i, "the write that was interrupted did not complete"
    print(json.dumps({"seen": seen, "files": sorted(os.listdir(os.path.dirname(path)))}))
""")


def test_sigint_during_checkpoint_writes_is_held_until_the_write_is_whole(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", WRITE_LOOP, str(tmp_path / "last.pt"), "20"], env=_env(),
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["seen"]) <= {"interrupted", "finished"} and result["seen"].get("interrupted", 0) >= 5, result
    assert result["files"] == ["last.pt"], result  # no temporary file left behind


@pytest.mark.parametrize("delay", [0.2, 0.4, 0.7, 1.0, 1.5])
def test_ctrl_c_during_startup_is_interrupted_not_a_traceback(delay: float) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "softspike", "info"], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    # 0: the command finished (a library's import may swallow the interrupt); never -2, death by SIGINT,
    # which CPython chooses at exit after an interrupt inside a C extension's PyRun_* (see console_main).
    assert proc.returncode in (0, 130), (proc.returncode, err)
    assert "Traceback" not in err, err
    if proc.returncode == 130:
        assert err.strip().endswith("interrupted"), err


SPEC = {
    "name": "big", "input_shape": [64], "T": 2, "encoder": {"type": "constant"},
    "layers": [{"type": "linear", "out_features": 4096}, {"type": "neuron", "neuron": {"type": "if"}},
               {"type": "linear", "out_features": 3}, {"type": "neuron", "neuron": {"type": "if"}}],
}


def test_sigint_while_training_writes_checkpoints_ends_130_with_a_whole_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((2000, 64)).astype(np.float32), y_train=np.arange(2000) % 3,
             x_test=rng.random((8, 64)).astype(np.float32), y_test=np.arange(8) % 3)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    ck = tmp_path / "ck"
    argv = ["train", str(tmp_path / "spec.json"), "--dataset", f"npz:{tmp_path / 'd.npz'}", "--batch-size", "2",
            "--checkpoint", str(ck), "--checkpoint-every", "1", "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "softspike", *argv], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (ck / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        # While it runs, a second run into its directory is refused, naming it.
        assert main(argv) == 1
        assert f"in use by another run (pid {proc.pid})" in capsys.readouterr().err
        time.sleep(random.uniform(0.05, 0.5))  # each step writes ~50 MB: most moments are inside a write
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip() == "softspike train: interrupted", err
    path = ck / "last.pt"
    validate_checkpoint(load_checkpoint(path), path, resume=True)
    assert sorted(p.name for p in ck.iterdir()) == [".lock", "last.pt"]
    trained = load_trained(path)  # weights whose names and shapes fit the spec it stores
    assert trained.checked.spec.name == "big" and not trained.net.training
