"""`softspike info` says which multi-step path runs here."""

from __future__ import annotations

import json

import pytest

from softspike.cli import main


def test_info_reports_the_fused_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["fused"]["default"] in ("native", "torch")
    assert info["plugins"]["neuron"] >= 4 and info["plugins"]["backend"] >= 4
    assert [b["name"] for b in info["fused"]["backends"]][-1] == "reference"
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backends (auto tries them in this order)" in out and "for a lif layer" in out


def test_info_explains_a_layer(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--neuron", "alif", "--shape", "4,2,8", "--dtype", "float64", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["fused"]["layer"]}
    assert rows["torch"]["chosen"] and "adaptive threshold" in rows["native"]["reason"]
    assert main(["info", "--neuron", "lif", "--device", "cuda"]) == 0  # a fake CUDA input: no GPU needed
    assert "on cuda: auto runs" in capsys.readouterr().out
