"""NIR against snnTorch: softspike's exports run in snnTorch's importer, batched and per sample, with
softspike's spikes. snnTorch 1.0's `import_from_nir` assumes dt = 1e-4 s (it builds Leaky with
beta = 1 - 1e-4/tau), so the export is written with dt = 1e-4 (`softspike export-nir --dt 1e-4`).
snnTorch is installed by `make interop` / `make bench` into .benchenv (benchmarks/setup_env.sh);
elsewhere these tests skip with that reason."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import nir
import pytest
import torch

from nir_peers import conv_spec, inputs, lively, same_spikes_batched_and_per_sample
from softspike.nir import export_nir, write_nir

snntorch_import = pytest.importorskip(
    "snntorch.import_nir", reason="snntorch is not installed: run `make interop` (it builds .benchenv)")
snntorch_utils = pytest.importorskip("snntorch.utils", reason="snntorch is not installed: run `make interop`")

SNNTORCH_DT = 1e-4


def _load(graph: Any) -> torch.nn.Module:
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line (and the arrays) per scaled LIF
        return snntorch_import.import_from_nir(graph)


def _run_snntorch(module: torch.nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """One step per call: its neurons keep their membrane (init_hidden), reset before each sequence."""
    snntorch_utils.reset(module)
    with torch.no_grad():
        return torch.stack([module(x)[0] for x in x_seq])


def test_mnist_fc_export_runs_batched_in_snntorch(tmp_path: Path) -> None:
    checked, net = lively("mnist_fc")
    write_nir(export_nir(checked, net, dt=SNNTORCH_DT), tmp_path / "fc.nir")
    module = _load(nir.read(str(tmp_path / "fc.nir")))
    same_spikes_batched_and_per_sample(net, inputs(checked), lambda x: _run_snntorch(module, x))


def test_a_conv_export_with_pooling_runs_batched_in_snntorch() -> None:
    checked, net = lively(conv_spec(pool=True))
    module = _load(export_nir(checked, net, dt=SNNTORCH_DT))
    same_spikes_batched_and_per_sample(net, inputs(checked), lambda x: _run_snntorch(module, x))


def test_another_dt_gives_snntorch_other_dynamics() -> None:
    """Why docs/nir.md says --dt 1e-4 for snnTorch: the default 1 ms export runs, with other spikes."""
    checked, net = lively("mnist_fc")
    x = inputs(checked)
    with torch.no_grad():
        want = net.body(x)
    got = _run_snntorch(_load(export_nir(checked, net, dt=1e-3)), x)
    assert got.shape == want.shape and not torch.equal(got, want)
