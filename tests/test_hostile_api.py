"""The same guarantees through the Python API: plugins, datasets, checkpoints, `softspike.load`,
`predict` on images, and a property test of the option types (run longer by `make fuzz`)."""

from __future__ import annotations

import argparse
import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

import softspike
from softspike.cli import main
from softspike.cli.options import device_option, float_option, int_option
from softspike.core.errors import RegistryError
from softspike.core.registry import NEURON_OPTIONS, Registry, _register_plugin
from softspike.models import build, check_spec
from softspike.plugins.neurons import LIF
from softspike.train import ArraySplit, CheckpointError, DatasetError, evaluate, load_dataset
from softspike.train.config import TrainConfig
from softspike.train.trained import spec_difference
from test_train_checkpoint import SPEC, _train, run_dir  # noqa: F401  (run_dir: a fixture used below)


@pytest.mark.parametrize("option", ["v_threshold", "step_mode", "surrogate"])
def test_a_neuron_plugin_with_a_field_named_like_a_neuron_option_is_refused(option: str) -> None:
    params = type("Params", (BaseModel,), {"__annotations__": {option: float, "tau": float},
                                           option: 1.0, "tau": 2.0})

    class Clashing(LIF):
        Params = params

    with pytest.raises(RegistryError, match=f"neuron 'clash' .*has field\\(s\\) {option}, which are neuron options"):
        Registry.empty().neurons.add("clash", Clashing)
    # Through plugin discovery it is reported like any broken plugin, and nothing of it stays registered.
    registry = Registry.empty()
    import pluggy

    from softspike.core.hookspecs import PROJECT, Hookspecs, hookimpl

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(Hookspecs)

    @hookimpl
    def softspike_register(registry: object) -> None:
        registry.neurons.add("clash", Clashing)  # type: ignore[attr-defined]

    module = types.ModuleType("clash_plugin")
    module.softspike_register = softspike_register  # type: ignore[attr-defined]
    _register_plugin(registry, pm, module, "clash", "clash-dist")
    assert "clash" not in registry.neurons
    assert [e.distribution for e in registry.errors] == ["clash-dist"]
    assert option in NEURON_OPTIONS and "neuron options" in registry.errors[0].error


def _npz(path: Path, **override: object) -> str:
    arrays = {"x_train": np.zeros((4, 4), np.float32), "y_train": np.arange(4) % 3,
              "x_test": np.zeros((2, 4), np.float32), "y_test": np.arange(2) % 3, **override}
    np.savez(path, **arrays)
    return f"npz:{path}"


@pytest.mark.parametrize(("override", "message"), [
    ({"y_train": np.full(4, 2**64 - 1, np.uint64)}, "label 18446744073709551615 is out of range"),
    ({"y_train": np.full(4, 2**40, np.int64)}, "label 1099511627776 is out of range"),
    ({"x_train": np.full((4, 4), 1e300)}, r"holds values up to 1e\+300, beyond float32"),
    ({"x_test": np.full((2, 4), -4e38)}, "beyond float32"),
])
def test_values_that_would_wrap_or_overflow_are_refused_at_load(tmp_path: Path, override: dict[str, object],
                                                                message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(_npz(tmp_path / "d.npz", **override))


def test_float64_values_within_float32_are_kept(tmp_path: Path) -> None:
    data = load_dataset(_npz(tmp_path / "d.npz", x_train=np.full((4, 4), 3e38)))
    assert math.isfinite(float(data.train.x.max()))


def test_an_empty_test_split_or_batch_size_is_an_error_not_zero_accuracy(tmp_path: Path) -> None:
    data = load_dataset(_npz(tmp_path / "d.npz", x_test=np.zeros((0, 4), np.float32), y_test=np.zeros(0, np.int64)))
    with pytest.raises(DatasetError, match="has no test samples"):
        data.check_fits([4], 3, "s")
    net = build(check_spec(SPEC))
    with pytest.raises(DatasetError, match="cannot evaluate 0 samples"):
        evaluate(net, data.test)
    with pytest.raises(DatasetError, match="in batches of 0"):
        evaluate(net, ArraySplit(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)), batch_size=0)


def test_load_returns_the_trained_network_in_eval_mode(run_dir: Path) -> None:  # noqa: F811
    assert _train(run_dir) == 0
    net = softspike.load(run_dir / "ck")
    assert not net.training
    stored = torch.load(run_dir / "ck" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, stored[k]) for k, v in net.state_dict().items())
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        softspike.load(run_dir / "nowhere.pt")


def test_evaluate_without_a_spec_uses_the_stored_one_and_a_different_spec_is_named(
        run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert _train(run_dir) == 0
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run_dir / "ck"), "--json"]) == 0
    without = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(run_dir / "spec.json"), "--checkpoint", str(run_dir / "ck"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == without
    changed = dict(SPEC, T=3, layers=[{"type": "linear", "out_features": 3},
                                      {"type": "neuron", "neuron": {"type": "lif"}}])
    (run_dir / "changed.json").write_text(json.dumps(changed))
    assert main(["evaluate", str(run_dir / "changed.json"), "--checkpoint", str(run_dir / "ck")]) == 1
    err = capsys.readouterr().err
    assert "T: checkpoint 2, given 3" in err and 'layers[1].neuron.type: checkpoint "if", given "lif"' in err


def test_spec_difference_names_each_path() -> None:
    a = {"T": 2, "layers": [{"type": "linear", "out_features": 3}], "name": "a"}
    assert spec_difference(a, a) == []
    b = {"T": 2, "layers": [{"type": "linear", "out_features": 4}, {"type": "flatten"}], "name": "a", "x": 1}
    assert spec_difference(a, b) == ["layers: checkpoint has 1 entries, given 2", 'x: checkpoint "<absent>", given 1']


def test_predict_classifies_npz_samples_and_images(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from PIL import Image

    image_spec = {"name": "img", "input_shape": [1, 6, 6], "T": 2, "encoder": {"type": "constant"},
                  "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3},
                             {"type": "neuron", "neuron": {"type": "if"}}]}
    (run_dir / "img.json").write_text(json.dumps(image_spec))
    np.savez(run_dir / "img.npz", x_train=np.zeros((4, 6, 6), np.uint8), y_train=np.arange(4) % 3,
             x_test=np.zeros((2, 6, 6), np.uint8), y_test=np.arange(2) % 3)
    assert main(["train", str(run_dir / "img.json"), "--dataset", f"npz:{run_dir / 'img.npz'}",
                 "--checkpoint", str(run_dir / "ick"), "--quiet"]) == 0
    Image.new("RGB", (12, 9), (255, 0, 0)).save(run_dir / "red.png")  # colour and size differ: converted
    np.savez(run_dir / "s.npz", x=np.zeros((3, 6, 6), np.uint8))
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run_dir / "ick"), str(run_dir / "red.png"), "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == 1 and len(out[0]["rates"]) == 3 and out[0]["class"] in (0, 1, 2)
    assert main(["predict", "--checkpoint", str(run_dir / "ick"), str(run_dir / "s.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("sample 0: class ")
    net = softspike.load(run_dir / "ick")
    from softspike.cli.predict import read_samples

    rates = net.spikes(read_samples(run_dir / "s.npz", (1, 6, 6))).mean(0)
    assert lines[2].endswith(" ".join(f"{v:.3f}" for v in rates[2].tolist()))


NUMERIC = {name: f for name, f in TrainConfig.model_fields.items() if f.annotation in (int, float)}


@given(field=st.sampled_from(sorted(NUMERIC)), text=st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str), st.floats().map(repr), st.text(max_size=12)))
def test_option_types_accept_exactly_what_train_config_accepts(field: str, text: str) -> None:
    parse = int_option(field) if NUMERIC[field].annotation is int else float_option(field)
    try:
        value = parse(text)
    except argparse.ArgumentTypeError:
        with pytest.raises(Exception):  # noqa: B017  (pydantic's error, or int()/float() refusing the text)
            TrainConfig(**{field: NUMERIC[field].annotation(text)})
        return
    assert getattr(TrainConfig(**{field: value}), field) == value


@given(st.text(max_size=20))
def test_device_option_refuses_what_is_not_a_device_kind(text: str) -> None:
    try:
        name = device_option(text)
    except argparse.ArgumentTypeError as err:
        assert "is not a device softspike runs on" in str(err)
        return
    assert name.split(":")[0] in ("cpu", "cuda", "mps", "xpu")
