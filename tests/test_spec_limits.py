"""Sizes by arithmetic and the memory limit: no weight is built to count, a network over the limit
is refused naming the layer and the size, and --max-memory moves the limit."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from softspike.cli import main
from softspike.models import SpecError, build, check_spec, count_parameters, load_spec, zoo_names
from softspike.models.limits import check_memory, estimate, format_size, machine_memory, parse_size
from test_spec_language import TINY

DOC = Path(__file__).resolve().parent.parent / "docs" / "specs.md"


def _specs() -> dict[str, Any]:
    doc = re.search(r"```json\n(\{\n  \"\$schema\".*?)```", DOC.read_text(), re.S)
    assert doc
    out = {name: load_spec(name) for name in zoo_names()}
    out["tiny"] = check_spec(TINY)
    out["doc"] = check_spec(json.loads(doc.group(1)))
    return out


def test_parameter_counts_by_arithmetic_equal_the_built_modules() -> None:
    for name, checked in _specs().items():
        net = build(checked)
        assert checked.num_parameters == count_parameters(net), name
        modules = dict(net.layer_paths)
        for info in checked.layers:
            module = modules[info.path]
            own = count_parameters(module) - (count_parameters(module.body) if hasattr(module, "body") else 0)
            assert info.params == own, (name, info.path)


def test_validate_and_summary_build_no_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a weight was built")

    for cls in (nn.Linear, nn.Conv2d, nn.BatchNorm2d):
        monkeypatch.setattr(cls, "__init__", refuse)
    # 6e7 outputs (4.6 GB of weights; issue 10 saw a 1.7 GB peak when validate built them to count).
    spec = json.loads(json.dumps(TINY))
    spec["layers"][7]["out_features"] = 60_000_000
    path = tmp_path / "big_linear.json"
    path.write_text(json.dumps(spec))
    assert main(["validate", str(path), "--max-memory", "100TiB", "--batch-size", "1"]) == 0
    # 18 inputs + 1 bias per output, plus the 62 parameters of TINY's other layers.
    assert f"{19 * 60_000_000 + 62:,} parameters" in capsys.readouterr().out
    assert main(["summary", "mnist_conv", "--batch-size", "1"]) == 0


def test_over_the_limit_names_the_layer_and_the_size(capsys: pytest.CaptureFixture[str]) -> None:
    checked = load_spec("mnist_conv")
    est = estimate(checked, 128)
    assert est.parameter_bytes == 16 * checked.num_parameters
    # One layer alone over the limit: that layer is named.
    big = est.largest()
    with pytest.raises(SpecError, match=re.escape(f"{big.path}: the {big.what} alone needs {format_size(big.total)}")):
        check_memory(checked, 128, big.total - 1)
    # The sum over the limit, no layer alone: the network, and its largest part.
    with pytest.raises(SpecError, match=rf"layers: the network needs .* the largest part is {re.escape(big.path)}"):
        check_memory(checked, 128, est.total - 1)
    assert check_memory(checked, 128, est.total).total == est.total
    assert main(["validate", "mnist_conv", "--max-memory", "1MiB"]) == 1
    err = capsys.readouterr().err
    assert "over the memory limit of 1 MiB" in err and "Traceback" not in err
    assert main(["validate", "mnist_conv", "--max-memory", "64GiB", "--batch-size", "1"]) == 0
    assert "(limit 64 GiB)" in capsys.readouterr().out


def test_activations_grow_with_batch_size_and_t() -> None:
    checked = load_spec("mnist_fc")
    one = estimate(checked, 1).activation_bytes
    assert estimate(checked, 4).activation_bytes == 4 * one
    data = json.loads(json.dumps(checked.to_json()))
    data["T"] *= 2
    assert estimate(check_spec(data), 1).activation_bytes == 2 * one


@pytest.mark.parametrize(("text", "size"), [("8GiB", 8 * 2**30), ("512M", 512 * 2**20), ("1.5GB", 1_500_000_000),
                                            ("1e9", 10**9), ("4096", 4096), ("2 kib", 2048)])
def test_memory_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "8GiBs", "-1G", "0", "1e400", "nanG"])
def test_bad_memory_sizes_are_refused(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="memory size"):
        parse_size(text)
    with pytest.raises(SystemExit) as exit_:
        main(["validate", "mnist_fc", "--max-memory", text])
    assert exit_.value.code == 2
    assert "--max-memory" in capsys.readouterr().err


def test_default_limit_is_the_machines_memory() -> None:
    assert machine_memory() > 2**28
    assert machine_memory("cuda:7") > 0 and machine_memory("cudax") > 0  # never an error from a device name
    assert torch.get_default_dtype() == torch.float32  # the estimate's 4 bytes per value


@pytest.mark.parametrize("value", [10**5000, -(10**5000), 10**60], ids=["5000_digits", "minus", "61_digits"])
def test_huge_integers_from_python_are_clear_errors(value: int) -> None:
    spec = json.loads(json.dumps(TINY))
    spec["T"] = value
    with pytest.raises(SpecError, match=r"T: must be [<>]= \S+ \(got an integer of about \d+ digits\)"):
        check_spec(spec)


def test_build_refuses_weights_beyond_memory_whatever_the_path() -> None:
    # evaluate, predict and softspike.load build from a checkpoint's stored spec: build itself guards.
    spec = json.loads(json.dumps(TINY))
    spec["layers"][7]["out_features"] = 2_000_000_000
    checked = check_spec(spec)
    with pytest.raises(SpecError, match=r"layers\[7\]: the network's 38,000,000,062 parameters would take 142 GiB "
                                        r"\(linear layer layers\[7\]: 38,000,000,000\), more than the 1 GiB"):
        build(checked, max_memory=2**30)
    assert build(check_spec(TINY), max_memory=2**20) is not None


def test_data_with_its_own_time_axis_is_counted_once() -> None:
    checked = load_spec("nmnist_conv")  # input_shape [T=8, 2, 34, 34] through the frames encoder
    assert checked.step_shape == (2, 34, 34)
    assert estimate(checked, 1).parts[0].activation_bytes == 8 * 2 * 34 * 34 * 4
