"""Ctrl-C at any moment: "interrupted", exit 130, no traceback, and a whole checkpoint.

Each test runs its victim in a child process with a hard timeout, so a hang fails the test."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from childproc import PATIENCE, Child, child_env, sigint_default
from softspike.cli import main
from softspike.train.checkpoint import load_checkpoint, validate_checkpoint
from softspike.train.trained import load_trained

# SIGINT sent from inside each moment of a checkpoint write (the k-th write call of torch's writer,
# the fsync, the rename): no timer has to land, every write is interrupted somewhere.
WRITE_LOOP = textwrap.dedent("""
    import collections, json, os, signal, sys
    import torch
    from softspike.train import checkpoint
    from softspike.train.checkpoint import load_checkpoint, save_checkpoint
    torch.set_num_threads(1)
    path, state = sys.argv[1], {"w": torch.randn(200_000), "n": 0}
    fdopen, fsync, replace = os.fdopen, os.fsync, os.replace
    when = {"write": -1, "moment": None}

    def interrupt(moment):
        if when["moment"] == moment:
            os.kill(os.getpid(), signal.SIGINT)

    class File:
        def __init__(self, f): self.f, self.calls = f, 0
        def write(self, data):
            self.calls += 1
            if self.calls == when["write"]: interrupt("write")
            return self.f.write(data)
        def __getattr__(self, name): return getattr(self.f, name)
        def __enter__(self): return self
        def __exit__(self, *exc): self.f.close()

    files = []
    checkpoint.os.fdopen = lambda *a, **k: files.append(File(fdopen(*a, **k))) or files[-1]
    checkpoint.os.fsync = lambda fd: (interrupt("fsync"), fsync(fd))
    checkpoint.os.replace = lambda a, b: (interrupt("replace"), replace(a, b))
    save_checkpoint(path, state)
    writes = files[-1].calls
    moments = [("write", 1 + k * (writes - 1) // 15) for k in range(16)] + [("fsync", 0), ("replace", 0)]
    seen = collections.Counter()
    for i, (moment, k) in enumerate(moments, 1):
        state["n"], when["moment"], when["write"] = i, moment, k
        try:
            save_checkpoint(path, state)
            seen["finished"] += 1
        except KeyboardInterrupt:
            seen["interrupted"] += 1
        except Exception as err:
            seen[type(err).__name__] += 1
        assert load_checkpoint(path)["n"] == i, f"the write interrupted at {moment} {k} did not complete"
    print(json.dumps({"seen": seen, "writes": writes, "files": sorted(os.listdir(os.path.dirname(path)))}))
""")


@pytest.mark.slow
def test_sigint_during_checkpoint_writes_is_held_until_the_write_is_whole(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", WRITE_LOOP, str(tmp_path / "last.pt")], env=child_env(),
                         capture_output=True, text=True, timeout=PATIENCE, preexec_fn=sigint_default)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["seen"] == {"interrupted": 18} and result["writes"] > 15, result
    assert result["files"] == ["last.pt"], result  # no temporary file left behind


# Moments of start-up, as `-X importtime` reports each import done: the program holding Ctrl-C
# before torch; inside torch's C-level import of numpy (where torch used to swallow the interrupt);
# torch's C core and torch loaded; the plugins, loaded by `info` itself.
STARTUP_MOMENTS = [r"softspike\.cli", r"numpy\._core\.multiarray", r"torch\._C", r"torch",
                   r"softspike\.plugins\.neurons"]


@pytest.mark.slow
@pytest.mark.parametrize("moment", STARTUP_MOMENTS)
def test_ctrl_c_during_startup_is_interrupted_not_a_traceback(moment: str) -> None:
    with Child([sys.executable, "-X", "importtime", "-m", "softspike", "info"]) as child:
        child.wait_for_line("stderr", rf"^import time:.*\| +{moment}$")
        child.send(signal.SIGINT)
        code, _, err = child.finish()
    # 0: `info` finished before the interrupt reached Python code; never -2, death by SIGINT, which
    # CPython chooses at exit after an interrupt inside a C extension's PyRun_* (see console_main).
    assert code in (0, 130), (code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    if code == 130 or moment != STARTUP_MOMENTS[-1]:
        # (importtime's lines, written by C in pieces, may wrap around the message: look for it)
        assert code == 130 and ("softspike: interrupted" in err or "softspike info: interrupted" in err), err[-3000:]


SPEC = {
    "name": "big", "input_shape": [64], "T": 2, "encoder": {"type": "constant"},
    "layers": [{"type": "linear", "out_features": 4096}, {"type": "neuron", "neuron": {"type": "if"}},
               {"type": "linear", "out_features": 3}, {"type": "neuron", "neuron": {"type": "if"}}],
}


@pytest.mark.slow
def test_sigint_while_training_writes_checkpoints_ends_130_with_a_whole_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((2000, 64)).astype(np.float32), y_train=np.arange(2000) % 3,
             x_test=rng.random((8, 64)).astype(np.float32), y_test=np.arange(8) % 3)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    ck = tmp_path / "ck"
    argv = ["train", str(tmp_path / "spec.json"), "--dataset", f"npz:{tmp_path / 'd.npz'}", "--batch-size", "2",
            "--checkpoint", str(ck), "--checkpoint-every", "1", "--quiet"]
    tmp = ck / ".last.pt.tmp-{pid}"
    with Child([sys.executable, "-m", "softspike", *argv]) as child:
        child.wait_until(lambda: (ck / "last.pt").exists(), "the first checkpoint")
        # While it runs, a second run into its directory is refused, naming it.
        assert main(argv) == 1
        assert f"in use by another run (pid {child.pid})" in capsys.readouterr().err
        # Each step writes ~50 MB: signal while a write is under way (its temporary file is there).
        child.wait_until(lambda: Path(str(tmp).format(pid=child.pid)).exists(), "a checkpoint write under way")
        child.send(signal.SIGINT)
        code, _, err = child.finish()
    assert code == 130, err
    assert err.strip() == "softspike train: interrupted", err
    path = ck / "last.pt"
    validate_checkpoint(load_checkpoint(path), path, resume=True)
    assert sorted(p.name for p in ck.iterdir()) == [".lock", "last.pt"]
    trained = load_trained(path)  # weights whose names and shapes fit the spec it stores
    assert trained.checked.spec.name == "big" and not trained.net.training
