"""NIR against a real peer: graphs Norse writes run in softspike, and softspike's exports run in Norse,
with the same spikes on the same input. Norse is installed by `make interop` / `make bench` into
.benchenv (benchmarks/setup_env.sh); elsewhere these tests skip with that reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nir
import pytest
import torch

from nir_peers import conv_spec, inputs, lively, same_spikes_batched_and_per_sample
from softspike.core.registry import get_registry
from softspike.models.load import check_spec
from softspike.nir import NIRError, export_nir, import_nir, write_nir

norse = pytest.importorskip("norse.torch", reason="norse is not installed: run `make interop` (it builds .benchenv)")

T, B = 24, 5


def _run_norse(module: Any, x_seq: torch.Tensor) -> torch.Tensor:
    state, out = None, []
    with torch.no_grad():
        for x in x_seq:
            z, state = module(x, state)
            out.append(z)
    return torch.stack(out)


def _same_spikes_as_norse(norse_net: Any, imported: Any, features: int, seed: int) -> None:
    x = torch.rand(T, B, features, generator=torch.Generator().manual_seed(seed))
    want = _run_norse(norse_net, x)
    with torch.no_grad():
        got = imported.network.body(x)
    assert 0.05 < float(want.mean()) < 0.95  # a silent network would pass vacuously
    if not torch.equal(got, want) and torch.equal(got[1:], want[:-1]):
        pytest.fail("softspike's spikes are Norse's one step later: its membrane takes the previous step's "
                    "current, Norse's LIFCell the current after this step's input (i <- i + X, then V, then decay)")
    assert torch.equal(got, want)


def _import_dt(written_tau: Any, tau_mem_inv: float, norse_dt: float) -> float:
    """The dt that gives softspike the time constant Norse simulates.

    Norse 1.1 writes tau = dt / tau_mem_inv (norse/norse#411, fixed after 1.1) instead of the NIR
    time constant 1 / tau_mem_inv; its simulation uses dt · tau_mem_inv per step either way."""
    return norse_dt * float(torch.as_tensor(written_tau).reshape(-1)[0]) * tau_mem_inv


def test_a_graph_norse_writes_gives_norses_spikes_in_softspike() -> None:
    torch.manual_seed(0)
    net = norse.SequentialState(
        torch.nn.Linear(6, 8),
        norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(250.0), v_th=torch.tensor(0.4))),
        torch.nn.Linear(8, 4, bias=False),
        norse.IAFCell(norse.IAFParameters(v_th=torch.tensor(0.3))),
    )
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    with pytest.warns(DeprecationWarning):  # Norse 1.1 calls nirtorch's extract_nir_graph
        graph = norse.to_nir(net, torch.randn(1, 6))
    lif = next(n for n in graph.nodes.values() if type(n).__name__ == "LIF")
    with pytest.raises(NIRError, match=r"tau = 4e-06 s is 0.004 time steps at dt = 0.001 s; an Euler step"):
        import_nir(graph, dt=1e-3, T=T)  # Norse's own dt: its to_nir wrote tau = dt / tau_mem_inv (see below)
    imported = import_nir(graph, dt=_import_dt(lif.tau, 250.0, 1e-3), T=T)
    assert [layer["type"] for layer in imported.spec["layers"]] == ["linear", "neuron", "linear", "neuron"]
    assert imported.spec["layers"][1]["neuron"]["tau"] == pytest.approx(4.0)
    _same_spikes_as_norse(net, imported, 6, seed=1)


def test_a_softspike_export_gives_the_same_spikes_in_norse() -> None:
    spec = {
        "name": "to_norse", "input_shape": [6], "T": T, "encoder": {"type": "constant"},
        "layers": [
            {"type": "linear", "out_features": 10},
            {"type": "neuron", "neuron": {"type": "lif", "tau": 4.0}, "v_threshold": 0.5},
            {"type": "linear", "out_features": 3, "bias": False},
            {"type": "neuron", "neuron": {"type": "if"}, "v_threshold": 0.6},
        ],
    }
    checked = check_spec(spec)
    from softspike.models.builder import build

    torch.manual_seed(2)
    net = build(checked).eval()
    with torch.no_grad():
        net.body[0].module.weight.mul_(3.0)
        net.body[2].module.weight.abs_().mul_(2.0)  # the output layer must fire for the test to mean much
    module = norse.from_nir(export_nir(checked, net, dt=1e-3), dt=1e-3)
    x = torch.rand(T, B, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = net.body(x)
    got = _run_norse(module, x)
    assert 0.05 < float(want.mean()) < 0.95
    assert torch.equal(got, want)


@pytest.mark.skipif("cuba_lif" not in get_registry().neurons, reason="no 'cuba_lif' neuron registered in this tree")
def test_a_norse_current_based_lif_runs_in_softspike() -> None:
    torch.manual_seed(4)
    p = norse.LIFParameters(tau_mem_inv=torch.tensor(200.0), tau_syn_inv=torch.tensor(500.0), v_th=torch.tensor(0.3))
    net = norse.SequentialState(torch.nn.Linear(5, 7), norse.LIFCell(p))
    with pytest.warns(DeprecationWarning):
        graph = norse.to_nir(net, torch.randn(1, 5))
    cuba = next(n for n in graph.nodes.values() if type(n).__name__ == "CubaLIF")
    dt = _import_dt(cuba.tau_mem, 200.0, 1e-3)
    imported = import_nir(graph, dt=dt, T=T)
    neuron = imported.spec["layers"][1]["neuron"]
    assert neuron["type"] == "cuba_lif" and neuron["tau_mem"] == pytest.approx(5.0)
    assert neuron["tau_syn"] == pytest.approx(2.0)
    _same_spikes_as_norse(net, imported, 5, seed=5)


@pytest.mark.parametrize("dt", [1e-3, 1e-4])
def test_mnist_fc_export_runs_batched_in_norse(tmp_path: Path, dt: float) -> None:
    """Through a file, as a user would; dt 1e-4 is the file snnTorch needs, which Norse reads given that dt."""
    checked, net = lively("mnist_fc")
    write_nir(export_nir(checked, net, dt=dt), tmp_path / "fc.nir")
    module = norse.from_nir(nir.read(str(tmp_path / "fc.nir")), dt=dt)
    same_spikes_batched_and_per_sample(net, inputs(checked), lambda x: _run_norse(module, x))


def test_a_conv_export_runs_batched_in_norse() -> None:
    checked, net = lively(conv_spec(pool=False))  # Norse 1.1 has no AvgPool2d (docs/nir.md)
    module = norse.from_nir(export_nir(checked, net, dt=1e-3), dt=1e-3)
    same_spikes_batched_and_per_sample(net, inputs(checked), lambda x: _run_norse(module, x))
