"""`make bench-gpu` cannot rot: its `--dry-run` runs every step on the CPU (peers missing here are
skipped with the reason) and writes its section only to the file given, never into docs/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # ~25 s under load: a child process trains one (small) epoch and runs every case
def test_bench_gpu_dry_run(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    out = tmp_path / "gpu.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("## GPU (`make bench-gpu`)")
    for part in ("| lif | hard | native | 1.000000 |", "| parametric_lif | straight | torch | 1.000000 |",
                 "Poisson [8, 64, 300] from one seed: identical", "spike-linear",
                 "packed and unpacked on cpu: identical",
                 "- running: softspike, plain", "one epoch of `softspike train mnist_fc --device cpu",
                 "NCCL pipeline: not run", "### LIF forward+backward [4, 8, 98]", "### Training MNIST T=2 B=4",
                 "### Training conv T=2 B=4", "Dry run: the figures below"):
        assert part in text, part
    for line in text.splitlines():  # every peer is run or skipped with the reason
        if line.startswith("- skipped "):
            assert ": " in line.removeprefix("- skipped ")
    assert "Traceback" not in proc.stderr and "FAILED" not in text
    assert (ROOT / "docs" / "benchmarks.md").read_text() == docs  # a dry run writes nothing into docs
