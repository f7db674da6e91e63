"""The Triton kernels proved on the CPU: triton's interpreter against the reference and the CPU kernels.

TRITON_INTERPRET=1 must be set before triton is first imported, so the cases run in one child
process (tests/triton_interpret_cases.py, which documents the cases and tolerances) and this file
reports them per op family. Without triton (a CPU-only torch) these tests skip with the reason and
the backend says it is unavailable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from softspike.kernels.triton import unavailable

HERE = Path(__file__).resolve().parent
WHY = unavailable()
needs_triton = pytest.mark.skipif(WHY is not None, reason=f"the Triton kernels cannot be tested here: {WHY}")


@pytest.fixture(scope="module")
def results() -> dict[str, list[list[str | None]]]:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, str(HERE / "triton_interpret_cases.py")], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, list[list[str | None]]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.slow  # a child process
@needs_triton
@pytest.mark.parametrize("family", ["scan", "bits", "spike_linear", "poisson"])
def test_triton_kernels_match_reference_in_interpreter(results: dict[str, list[list[str | None]]],
                                                       family: str) -> None:
    rows = results[family]
    assert rows, f"no {family} cases were generated"
    failed = [f"{name}: {err}" for name, err in rows if err]
    assert not failed, f"{len(failed)} of {len(rows)} {family} cases failed:\n" + "\n".join(failed[:5])


@pytest.mark.slow  # a child process
@needs_triton
def test_scan_cases_cover_the_registry(results: dict[str, list[list[str | None]]]) -> None:
    names = [str(name) for name, _ in results["scan"]]
    for gate in ("sigmoid", "atan", "piecewise_quadratic", "fast_sigmoid", "erf", "triangle", "straight_through"):
        assert any(f"/{gate}/" in n for n in names), gate
    for dyn in ("if/", "lif/", "parametric_lif/"):
        assert any(n.startswith(dyn) for n in names), dyn
    for part in ("float16", "bfloat16", "straight_through", "T=1", "M=0", "op path"):
        assert any(part in n for n in names), part


def test_backend_reports_missing_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from softspike.core.step import FireConfig
    from softspike.kernels.triton import register
    from softspike.plugins.neurons import LIF
    from softspike.plugins.surrogates import Sigmoid

    monkeypatch.setitem(sys.modules, "triton", None)  # what a CPU-only torch looks like
    unavailable.cache_clear()
    try:
        why = unavailable()
        assert why is not None and "triton does not import" in why
        assert register.triton_backend().available() == why
        assert register.install() == why
        cfg = FireConfig(1.0, 0.0, Sigmoid())
        assert "CUDA tensors" in (register.supports(LIF(), cfg, torch.zeros(2, 3)) or "")
    finally:
        monkeypatch.undo()
        unavailable.cache_clear()
