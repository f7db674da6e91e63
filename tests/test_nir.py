"""NIR export and import: softspike -> NIR -> softspike gives the same spikes; the mappings that fold
NIR's gains and leak potentials into weights are checked against the NIR equations simulated here."""

from __future__ import annotations

import json
import sys
from typing import Any

import nir
import numpy as np
import pytest
import torch

from softspike.cli import main
from softspike.core.extras import MissingExtraError
from softspike.core.registry import get_registry
from softspike.models.builder import build
from softspike.models.load import check_spec, load_spec
from softspike.nir import NIRError, export_nir, import_nir, read_nir, write_nir
from softspike.train.checkpoint import load_checkpoint

CONV_SPEC: dict[str, Any] = {
    "name": "nir_conv", "input_shape": [2, 6, 6], "T": 6, "encoder": {"type": "constant"},
    "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "neuron", "neuron": {"type": "if"}, "v_threshold": 0.7,
         "surrogate": {"type": "atan", "alpha": 3.0}},
        {"type": "avgpool2d", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.1},
        {"type": "linear", "out_features": 5, "bias": False},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 3.0}, "v_threshold": 0.5, "v_reset": -0.1},
    ],
}


def _lively(net: torch.nn.Module, gain: float = 3.0) -> None:
    """Weights large enough that every layer spikes (default inits leave deep layers nearly silent)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, gain / max(p[0].numel(), 1) ** 0.5 if p.dim() > 1 else 0.2)


def _inputs(shape: list[int], T: int, B: int = 3) -> torch.Tensor:
    return torch.rand(T, B, *shape, generator=torch.Generator().manual_seed(2)) * 1.5


def test_round_trip_through_a_file_gives_the_same_spikes(tmp_path: Any) -> None:
    checked = check_spec(CONV_SPEC)
    net = build(checked).eval()
    _lively(net)
    write_nir(export_nir(checked, net, dt=1e-3), tmp_path / "net.nir")
    imported = import_nir(tmp_path / "net.nir")
    seq = _inputs(CONV_SPEC["input_shape"], 6)
    with torch.no_grad():
        want, got = net.body(seq), imported.network.body(seq)
    assert 0.05 < float(want.mean()) < 0.95  # the test would pass vacuously on a silent network
    assert torch.equal(want, got)
    layers = imported.spec["layers"]
    assert [layer["type"] for layer in layers] == ["conv2d", "neuron", "avgpool2d", "flatten", "linear", "neuron"]
    assert layers[1]["surrogate"] == {"type": "atan", "alpha": 3.0}  # training settings ride along
    assert layers[5]["neuron"] == {"type": "lif", "tau": pytest.approx(3.0)} and layers[5]["v_reset"] == -0.1
    assert imported.spec["name"] == "nir_conv" and imported.spec["T"] == 6 and imported.dt == 1e-3


def test_tau_is_written_in_seconds_and_read_back_in_steps() -> None:
    graph = export_nir("mnist_fc", dt=2e-3)
    lif = graph.nodes["layers_2"]
    assert isinstance(lif, nir.LIF) and lif.tau.shape == (196,)
    assert np.allclose(lif.tau, 2.0 * 2e-3) and np.allclose(lif.v_leak, 0.0)
    graph.metadata = {}  # a foreign file: dt is not stored, so it is given
    assert import_nir(graph, dt=1e-3).spec["layers"][2]["neuron"]["tau"] == pytest.approx(4.0)


@pytest.mark.skipif("cuba_lif" not in get_registry().neurons, reason="no 'cuba_lif' neuron registered in this tree")
def test_current_based_lif_round_trip() -> None:
    spec = {"name": "cuba", "input_shape": [5], "T": 16, "encoder": {"type": "constant"}, "layers": [
        {"type": "linear", "out_features": 6},
        {"type": "neuron", "neuron": {"type": "cuba_lif", "tau_mem": 4.0, "tau_syn": 2.0}, "v_threshold": 0.3}]}
    checked = check_spec(spec)
    net = build(checked).eval()
    _lively(net)
    graph = export_nir(checked, net, dt=1e-3)
    cuba = graph.nodes["layers_1"]
    assert isinstance(cuba, nir.CubaLIF)
    assert np.allclose(cuba.tau_mem, 4e-3) and np.allclose(cuba.tau_syn, 2e-3)
    imported = import_nir(graph)
    assert imported.spec["layers"][1]["neuron"] == {"type": "cuba_lif", "tau_mem": pytest.approx(4.0),
                                                     "tau_syn": pytest.approx(2.0)}
    seq = _inputs([5], 16)
    with torch.no_grad():
        want, got = net.body(seq), imported.network.body(seq)
    assert 0.05 < float(want.mean()) < 0.95
    assert torch.equal(want, got)


def _simulate_nir(x_seq: np.ndarray, w: np.ndarray, b: np.ndarray, scale: np.ndarray, lif: Any, dt: float) -> Any:
    """The NIR graph Affine -> Scale -> LIF by NIR's equations, Euler steps of dt (hard reset to v_reset)."""
    v = np.array(lif.v_reset, dtype=np.float64)
    out = []
    for x in x_seq:
        i = scale * (x @ w.T + b)
        v = v + dt / lif.tau * (lif.v_leak - v + lif.r * i)
        z = (v >= lif.v_threshold).astype(np.float64)
        v = np.where(z > 0, lif.v_reset, v)
        out.append(z)
    return np.stack(out)


def test_scale_r_and_leak_potential_fold_into_the_weights() -> None:
    rng = np.random.default_rng(0)
    w, b = rng.normal(0, 1, (4, 3)), rng.normal(0, 0.3, 4)
    scale = np.array([0.5, 2.0, 1.0, 1.5])
    lif = nir.LIF(tau=np.full(4, 3e-3), r=np.full(4, 1.7), v_leak=np.full(4, 0.4), v_threshold=np.full(4, 1.0),
                  v_reset=np.full(4, -0.2))
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([3])), nir.Affine(weight=w, bias=b),
                                   nir.Scale(scale=scale), lif)
    imported = import_nir(graph, dt=1e-3, T=20)
    x = rng.uniform(0, 1.5, (20, 5, 3))
    want = _simulate_nir(x, w, b, scale, lif, 1e-3)
    with torch.no_grad():
        got = imported.network.body(torch.from_numpy(x).float()).numpy()
    assert 0.05 < want.mean() < 0.95
    assert (got == want).mean() > 0.999  # float32 against float64: a tie may round either way
    assert imported.spec["layers"][0]["bias"] is True


def test_sumpool_and_threshold_nodes() -> None:
    rng = np.random.default_rng(1)
    conv = nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 1, (2, 1, 3, 3)), stride=1, padding=1, dilation=1,
                      groups=1, bias=np.zeros(2))
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1, 4, 4])), conv,
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0),
        nir.Threshold(threshold=np.full(8, 0.5)), type_check=False,
    )
    imported = import_nir(graph, T=2)
    x = torch.from_numpy(rng.uniform(0, 1, (2, 3, 1, 4, 4))).float()
    summed = torch.nn.functional.avg_pool2d(torch.nn.functional.conv2d(
        x.flatten(0, 1), torch.from_numpy(conv.weight).float(), padding=1), 2) * 4
    want = (summed.flatten(1) >= 0.5).float().unflatten(0, (2, 3))
    with torch.no_grad():
        got = imported.network.body(x)
    assert 0.05 < float(want.mean()) < 0.95
    assert torch.equal(got, want)


@pytest.mark.parametrize(("change", "message"), [
    ({"v_reset": None}, "layers[1]: soft reset"),
    ({"neuron": {"type": "alif"}}, "layers[1]: neuron 'alif' has no NIR node"),
])
def test_export_names_the_layer_without_a_nir_node(change: dict[str, Any], message: str) -> None:
    spec = json.loads(json.dumps(CONV_SPEC))
    spec["layers"][1].update(change)
    with pytest.raises(NIRError, match=message.replace("[", r"\[").replace("]", r"\]")):
        export_nir(spec)


def test_export_refuses_batch_norm_and_residual_blocks_by_path() -> None:
    with pytest.raises(NIRError, match=r"layers\[1\]: layer type 'batchnorm2d' has no NIR node"):
        export_nir("mnist_conv")
    spec = json.loads(json.dumps(CONV_SPEC))
    spec["layers"].insert(2, {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 1}]})
    with pytest.raises(NIRError, match=r"layers\[2\]: layer type 'residual' has no NIR node \(NIR export takes"):
        export_nir(spec)


def _graph(*nodes: Any) -> Any:
    return nir.NIRGraph.from_list(*nodes, type_check=False)


def test_import_errors_name_the_node() -> None:
    affine = nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2))
    with pytest.raises(NIRError, match=r"node 'li' \(LI\): NIR node type LI has no softspike layer"):
        import_nir(_graph(nir.Input(input_type=np.array([3])), affine,
                          nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))))
    with pytest.raises(NIRError, match=r"node 'lif' \(LIF\): parameter tau differs between neurons"):
        import_nir(_graph(nir.Input(input_type=np.array([3])), affine, nir.LIF(
            tau=np.array([1e-3, 2e-3]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))))
    with pytest.raises(NIRError, match=r"node 'scale' \(Scale\): Scale must follow a linear or conv layer"):
        import_nir(_graph(nir.Input(input_type=np.array([2])), nir.Scale(scale=np.full(2, 2.0)), affine))
    branch = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([3])), "a": affine,
                                 "b": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
                                 "output": nir.Output(output_type=np.array([2]))},
                          edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")], type_check=False)
    with pytest.raises(NIRError, match="node 'input' has 2 successors"):
        import_nir(branch)


def test_read_errors(tmp_path: Any) -> None:
    with pytest.raises(NIRError, match="no such file"):
        read_nir(tmp_path / "missing.nir")
    (tmp_path / "bad.nir").write_text("not hdf5")
    with pytest.raises(NIRError, match="not a readable NIR file"):
        import_nir(tmp_path / "bad.nir")


def test_cli_export_then_import(tmp_path: Any, capsys: Any) -> None:
    out = tmp_path / "fc.nir"
    assert main(["export-nir", "mnist_fc", "-o", str(out), "--dt", "0.002"]) == 0
    assert "untrained weights (seed 0)" in capsys.readouterr().out
    spec, weights = tmp_path / "spec.json", tmp_path / "w.pt"
    assert main(["import-nir", str(out), "-o", str(spec), "--weights", str(weights)]) == 0
    assert "dt = 0.002 s" in capsys.readouterr().out
    checked = load_spec(str(spec))
    state = load_checkpoint(weights)
    torch.manual_seed(0)
    original = build(load_spec("mnist_fc"))
    assert all(torch.equal(state["model"][k], v) for k, v in original.state_dict().items())
    assert checked.spec.readout.scale == 8.0 and checked.spec.encoder.type == "poisson"
    rng = np.random.default_rng(0)  # the weights file is a checkpoint that `softspike evaluate` reads
    np.savez(tmp_path / "d.npz", x_train=rng.random((4, 1, 28, 28)).astype(np.float32), y_train=np.arange(4),
             x_test=rng.random((4, 1, 28, 28)).astype(np.float32), y_test=np.arange(4))
    assert main(["evaluate", str(spec), "--checkpoint", str(weights), "--dataset", f"npz:{tmp_path / 'd.npz'}"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["import-nir", str(tmp_path / "missing.nir"), "-o", str(spec)]) == 1
    assert "no such file" in capsys.readouterr().err
    again = tmp_path / "again.nir"  # from a checkpoint alone: its stored spec and weights
    assert main(["export-nir", "--checkpoint", str(weights), "-o", str(again)]) == 0
    assert "trained weights" in capsys.readouterr().out
    assert np.array_equal(read_nir(again).nodes["layers_1"].weight, read_nir(out).nodes["layers_1"].weight)
    assert main(["export-nir", "-o", str(again)]) == 1
    assert "give a SPEC, a --checkpoint, or both" in capsys.readouterr().err


def test_without_the_nir_package_the_error_names_the_extra(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "nir", None)  # what an environment without the package looks like
    with pytest.raises(MissingExtraError, match=r"NIR import and export needs .*pip install 'softspike\[nir\]'"):
        export_nir("mnist_fc")
