"""The pipeline and data-parallel runtime against one process (CPU, gloo, real processes under torchrun).

One torchrun launch of 2 processes runs every pipeline case (GPipe and 1F1B, 1/2/4 micro-batches,
activation recomputation) and DDP; one launch of 4 processes runs 2 stages x 2 replicas. Batch norm in
training mode normalises per micro-batch (or per replica), so the reference is one process running the
same pieces of the batch with gradient accumulation (DESIGN.md).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from softspike.models.builder import build
from softspike.models.load import check_spec
from softspike.pipelines.running.stages import Layout, LayoutError, batch_loss

sys.path.insert(0, str(Path(__file__).parent))
from test_pipeline_runtime_worker import BATCH, PIPELINE_CASES, SPEC, batch

pytestmark = pytest.mark.slow  # child processes (make test-fast leaves these out)

WORKER = Path(__file__).with_name("test_pipeline_runtime_worker.py")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The references here are tiny: with two threads on a loaded 2-core machine each op waits for the
    other thread (1.9 s instead of 0.04 s per reference), so one thread, as every worker process runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def torchrun(nproc: int, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    """Run torchrun with a hard timeout: a hang kills the whole process group and fails the test."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SOFTSPIKE_DIST_TIMEOUT": "60", "PYTHONWARNINGS": "ignore",
           "PYTHONFAULTHANDLER": "1"}  # a fatal signal in a rank prints every thread's Python stack
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun {' '.join(args)} hung for {timeout} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def pipeline_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pp")
    done = torchrun(2, str(WORKER), "pipeline", str(out))
    assert done.returncode == 0, done.stderr[-4000:]
    return out


def _load(folder: Path, case: str, rank: int) -> dict[str, Any]:
    return torch.load(folder / f"{case}-rank{rank}.pt", weights_only=True)  # type: ignore[no-any-return]


def _reference(pieces: list[torch.Tensor], backward: bool = True) -> tuple[Any, float, torch.Tensor]:
    """One process: the batch's pieces one after another, gradients accumulated; (net, loss, output)."""
    checked = check_spec(SPEC)
    torch.manual_seed(0)
    net = build(checked)
    x, y = batch()
    seq = net.encoder.encode(x, net.T)
    loss, outs = 0.0, []
    for idx in pieces:
        out = net.body(seq[:, idx])
        piece_loss = batch_loss(out, y[idx], "cross_entropy", net.readout_scale, BATCH)
        if backward:
            piece_loss.backward()
        loss += float(piece_loss.detach())
        outs.append(out.detach())
    return net, loss, torch.cat(outs, 1)


def _merged(records: list[dict[str, Any]], key: str) -> dict[str, torch.Tensor]:
    merged: dict[str, torch.Tensor] = {}
    for r in records:
        merged.update(r[key])
    return merged


def _assert_grads(net: Any, grads: dict[str, torch.Tensor]) -> None:
    want = {n: p.grad for n, p in net.named_parameters()}
    assert set(grads) == {n for n, g in want.items() if g is not None}
    for name, g in grads.items():
        torch.testing.assert_close(g, want[name], msg=lambda m, n=name: f"{n}: {m}")
    assert any(float(g.abs().sum()) > 0 for g in grads.values())


@pytest.mark.parametrize("case,schedule,microbatches,recompute", PIPELINE_CASES)
def test_pipeline_equals_one_process(pipeline_runs: Path, case: str, schedule: str, microbatches: int,
                                     recompute: bool) -> None:
    ranks = [_load(pipeline_runs, case, r) for r in (0, 1)]
    size = BATCH // microbatches
    pieces = [torch.arange(m * size, (m + 1) * size) for m in range(microbatches)]
    net, loss, _ = _reference(pieces)
    _assert_grads(net, _merged(ranks, "grads"))
    # Batch-norm statistics saw each micro-batch once, in order: no shape probe, no recomputation trace.
    buffers = {n: b for n, b in net.named_buffers()}
    for name, value in _merged(ranks, "buffers").items():
        torch.testing.assert_close(value, buffers[name], msg=lambda m, n=name: f"{n}: {m}")
    assert ranks[1]["loss_sum"] / BATCH == pytest.approx(loss, rel=1e-5)
    # Firing-rate monitors counted every neuron of every sample exactly once.
    checked = check_spec(SPEC)
    expect = {info.path: SPEC["T"] * BATCH * math.prod(info.out_shape) for info in checked.layers
              if info.layer.type == "neuron"}
    assert {**ranks[0]["counts"], **ranks[1]["counts"]} == expect
    # Evaluation through the same pipeline: eval-mode batch norm, padding rows not counted.
    net.eval()
    x, y = batch()
    with torch.no_grad():
        rates = net.body(net.encoder.encode(x, net.T)).mean(0)[:6]
    want = torch.nn.functional.cross_entropy(rates * net.readout_scale, y[:6], reduction="sum")
    assert ranks[1]["eval_loss_sum"] == pytest.approx(float(want), rel=1e-5)
    assert ranks[1]["eval_correct"] == int((rates.argmax(1) == y[:6]).sum())


def test_ddp_equals_one_process(pipeline_runs: Path) -> None:
    ranks = [_load(pipeline_runs, "ddp", r) for r in (0, 1)]
    pieces = [torch.arange(r, BATCH, 2) for r in (0, 1)]  # the DistributedSampler's interleaved shares
    net, loss, _ = _reference(pieces)
    for record in ranks:  # every replica holds the averaged gradient
        _assert_grads(net, record["grads"])
    assert (ranks[0]["loss_sum"] + ranks[1]["loss_sum"]) / BATCH == pytest.approx(loss, rel=1e-5)
    for r, record in enumerate(ranks):  # each replica's statistics: its own share, from the same start
        own, _, _ = _reference([pieces[r]], backward=False)
        for name, b in own.named_buffers():
            torch.testing.assert_close(record["buffers"][name], b)


def test_pipeline_times_data_parallel_equals_one_process(tmp_path: Path) -> None:
    done = torchrun(4, str(WORKER), "ppdp", str(tmp_path))
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [_load(tmp_path, "ppdp", r) for r in range(4)]  # rank = stage * 2 + replica
    shares = [torch.arange(r, BATCH, 2) for r in (0, 1)]
    pieces = [share[m * 2:(m + 1) * 2] for share in shares for m in (0, 1)]
    net, loss, _ = _reference(pieces)
    for replica in (0, 1):
        _assert_grads(net, _merged([ranks[replica], ranks[2 + replica]], "grads"))
    assert (ranks[2]["loss_sum"] + ranks[3]["loss_sum"]) / BATCH == pytest.approx(loss, rel=1e-5)


def test_layout_errors_name_the_fix() -> None:
    good = Layout(((0, 4), (4, 8)), "1f1b", 2)
    good.check(8, 2, 16)
    with pytest.raises(LayoutError, match=r"need 2 processes, but this job has 3.*--nproc-per-node 2"):
        good.check(8, 3)
    with pytest.raises(LayoutError, match=r"cover 8 blocks, but the spec has 9"):
        good.check(9, 2)
    with pytest.raises(LayoutError, match=r"stage 1 covers blocks \[5, 8\) but must start at block 4"):
        Layout(((0, 4), (5, 8))).check(8, 2)
    with pytest.raises(LayoutError, match=r"--batch-size 10 must split evenly into 1 replicas x 4 micro-batches"):
        Layout(((0, 4), (4, 8)), "gpipe", 4).check(8, 2, 10)
    with pytest.raises(LayoutError, match="interleaved_1f1b needs several stages per process"):
        Layout(((0, 8),), "interleaved_1f1b").check(8, 1)
