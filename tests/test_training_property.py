"""The training property over every registered neuron and gate, and the checker's failure reports.

Every neuron (with the sigmoid gate) and every gate (with the IF neuron) trains mnist_fc's network
at production size through `fit`: the cuba_lif case is the one that crashed `softspike train`
(issue 13), and it compiles the generic scan once in this process.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

import softspike
from softspike.kernels import scan_compiled
from softspike.testing import ConformanceError, check_plugin, check_trains

REG = softspike.get_registry()


@pytest.mark.parametrize("name", REG.neurons.names())
def test_every_neuron_trains_mnist_fc(name: str) -> None:
    got = check_trains(name)
    assert got["losses"][-1] < got["losses"][0]
    if REG.neurons.create(name).dynamics.linear_charge() is None and scan_compiled.status()[0]:
        assert got["paths"]["layers[2]"] == "compiled"  # the production-size layer took the generic scan


@pytest.mark.parametrize("gate", [g for g in REG.surrogates.names() if g != "sigmoid"])  # sigmoid: above
def test_every_gate_trains_mnist_fc(gate: str) -> None:
    # torch.compile is checked once per neuron (above); with IF every built-in gate runs its kernel
    check_trains("if", gate, compile_backend=None)


BAD = '''
import torch, softspike
from softspike.core import Dynamics, Params
from softspike.core.dynamics import LinearCharge

class DoubleTau(Dynamics):
    """Declares tau, charges with 2*tau."""
    Params = Params
    tau = 2.0
    def charge(self, x, state, v_rest):
        v = state["v"]
        return v + (x - (v - v_rest)) / (2 * self.tau), state
    def linear_charge(self):
        return LinearCharge(tau=self.tau)

class ReciprocalTau(DoubleTau):
    """Declares x / tau, computes x * (1 / tau): equal up to rounding, which the property refuses."""
    tau = 3.0
    def charge(self, x, state, v_rest):
        v = state["v"]
        return v + (x - (v - v_rest)) * (1 / self.tau), state
    def linear_charge(self):
        return LinearCharge(tau=self.tau)

@softspike.hookimpl
def softspike_register(registry):
    registry.neurons.add("double_tau", DoubleTau)
    registry.neurons.add("reciprocal_tau", ReciprocalTau)
'''


def test_checker_names_the_property_neuron_and_counterexample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from softspike.cli import main

    (tmp_path / "h13_bad_decl.py").write_text(textwrap.dedent(BAD))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "h13_bad_decl", "--max-examples", "5", "--no-train", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in report["checked"]}
    double, recip = rows["double_tau"], rows["reciprocal_tau"]
    for row in (double, recip):
        assert not row["ok"] and row["property"] == "fused path equals the reference loop"
        assert "ExceptionGroup" not in row["error"]
        assert "Failing test case: check_fused_matches_reference(" in row["counterexample"]
    assert "DoubleTau: dH/dX of charge is [0.25" in double["error"] and "gives [0.5" in double["error"]
    assert "ReciprocalTau: H at step" in recip["error"] and "x * (1 / tau)" in recip["error"]
    # the text report of the same rows (not checked again: hypothesis's shrinking costs seconds)
    monkeypatch.setattr("softspike.cli.check.check", lambda *a, **k: report["checked"])
    assert main(["check", "h13_bad_decl"]) == 1
    out = capsys.readouterr().out
    assert "FAIL neuron 'double_tau'" in out and "property: fused path equals the reference loop" in out


def test_the_exact_property_passes_the_built_in_declarations() -> None:
    # The tolerance docs/plugins.md states: exact on the declared step for every declaring built-in.
    for name in ("if", "lif", "parametric_lif", "alif"):
        check_plugin("neuron", name, max_examples=10, train=False)


def test_conformance_error_carries_its_parts() -> None:
    err = ConformanceError("neuron", "x", "some property", "what broke", "Failing test case: f(a=1)")
    assert isinstance(err, AssertionError) and err.prop == "some property"
    assert str(err) == "neuron 'x' fails the property 'some property': what broke\nFailing test case: f(a=1)"


def test_cross_field_error_and_layer_listing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from softspike.cli import main
    from softspike.core.params import Params
    from softspike.models.errors import problems_from

    class Window(Params):
        low: float = 0.0
        high: float = 1.0

        @__import__("pydantic").model_validator(mode="after")
        def _ordered(self) -> Window:
            if self.high <= self.low:
                raise ValueError(f"high ({self.high}) must be above low ({self.low})")
            return self

    data = {"low": 2.0, "high": 1.0}
    with pytest.raises(__import__("pydantic").ValidationError) as info:
        Window.model_validate(data)
    (line,) = problems_from(info.value, data)
    assert line.endswith("must be above low (2.0)") and "(got dict)" not in line
    assert main(["plugins"]) == 0
    layers = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("layer")]
    assert layers and not any("type=" in ln for ln in layers)
