"""`softspike summary` shows every setting of every part (surrogate, encoder, readout included),
parameter counts and activation sizes, all from the spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softspike.cli import main

SPEC = {
    "name": "every_part", "input_shape": [4], "T": 3, "encoder": {"type": "delta", "threshold": 0.2},
    "layers": [
        {"type": "residual", "layers": [
            {"type": "linear", "out_features": 4},
            {"type": "neuron", "neuron": {"type": "parametric_lif", "init_tau": 3.0},
             "surrogate": {"type": "sigmoid", "alpha": 9.0}, "detach_reset": True},
        ]},
        {"type": "linear", "out_features": 2, "bias": False},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "v_reset": None, "v_threshold": 0.5},
    ],
    "readout": {"type": "rate", "scale": 3.0},
}


def test_summary_shows_every_setting_and_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "every_part.json"
    path.write_text(json.dumps(SPEC))
    assert main(["summary", str(path), "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0] + ("/" + line.split()[1] if line.startswith("  ") else ""): line
             for line in out.splitlines() if line.strip()}
    assert out.splitlines()[0].split() == ["LAYER", "TYPE", "SETTINGS", "OUTPUT", "SHAPE", "PARAMS", "ACTIVATIONS"]
    assert "delta(threshold=0.2, off_spikes=False) T=3" in lines["input"]
    # The gate with its alpha (issue 9 saw `sigmoid` for alpha 9), and every neuron option.
    inner = lines["layers[1]/neuron"]
    assert "parametric_lif(init_tau=3.0)" in inner and "sigmoid(alpha=9.0)" in inner
    assert "detach_reset=True" in inner and "reset_grad=surrogate" in inner and inner.split()[-3] == "1"
    # No surrogate given: the one the neuron uses, with its default parameters.
    outer = lines["layers[2]"]
    assert "lif(tau=2.0) v_threshold=0.5 v_reset=None (soft) sigmoid(alpha=4.0)" in outer
    assert "rate(scale=3.0)" in lines["readout"]
    # Activations: [T=3, B=2, 2] = 12 float32 values, twice for a neuron (spikes and membrane): 96 bytes.
    assert outer.split()[-2:] == ["96", "B"]
    assert lines["total"].split()[1] == f"{4 * 4 + 4 + 1 + 4 * 2:,}"
    assert out.splitlines()[-1].startswith("every_part: about ") and "batch size 2" in out.splitlines()[-1]
