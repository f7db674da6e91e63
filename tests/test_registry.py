"""The registry: names, schemas, validation, clashes, autoload, and the `plugins` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import Field

import softspike
from softspike.cli import main
from softspike.core.dynamics import Dynamics
from softspike.core.errors import ParameterError, RegistryError, UnknownPluginError
from softspike.core.params import Params
from softspike.core.registry import load_registry
from softspike.plugins.neurons import LIF


def test_builtins_are_registered_through_the_entry_point() -> None:
    reg = softspike.get_registry()
    assert {"if", "lif", "parametric_lif", "alif"} <= set(reg.neurons.names())
    assert len(reg.surrogates.names()) >= 7 and len(reg.encoders.names()) >= 4
    assert reg.neurons.get("lif").distribution == "softspike"
    assert reg.errors == []


def test_create_validates_and_builds() -> None:
    reg = softspike.get_registry()
    node = reg.neurons.create("lif", tau=3.0, v_threshold=0.5, surrogate="erf", step_mode="m")
    assert node.dynamics.tau == 3.0 and node.v_threshold == 0.5 and node.step_mode == "m"
    assert type(reg.surrogates.create("atan", alpha=3.0)).__name__ == "ATan"
    with pytest.raises(ParameterError, match=r"tau: Input should be greater than or equal to 0.5: .* \(got -2\.0\)"):
        reg.neurons.create("lif", tau=-2.0)
    with pytest.raises(ParameterError, match="taus: unknown parameter"):
        reg.neurons.create("lif", taus=2.0)
    with pytest.raises(ParameterError, match="alpha"):
        reg.surrogates.create("sigmoid", alpha=float("inf"))


def test_unknown_names_suggest_close_matches() -> None:
    reg = softspike.get_registry()
    with pytest.raises(LookupError, match="did you mean 'sigmoid'"):
        reg.surrogates.get("sigmod")
    with pytest.raises(UnknownPluginError, match=r"unknown encoder 'zzz'.*registered: constant"):
        reg.encoders.create("zzz")


def test_schema_is_the_plugins_own() -> None:
    schema = softspike.get_registry().neurons.schema("lif")
    assert schema["properties"]["tau"]["minimum"] == 0.5
    assert "time constant" in schema["properties"]["tau"]["description"]
    assert schema["additionalProperties"] is False


class _MyParams(Params):
    gain: float = Field(1.0, gt=0)


class _MyDynamics(Dynamics):
    def __init__(self, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = gain

    def charge(self, x, state, v_rest):  # type: ignore[no-untyped-def]
        return state["v"] + self.gain * x, state


def test_registration_rules() -> None:
    reg = load_registry(autoload=False)
    reg.neurons.add("my_if", _MyDynamics, _MyParams)
    assert reg.neurons.create("my_if", gain=2.0).dynamics.gain == 2.0
    with pytest.raises(RegistryError, match="already registered by softspike"):
        reg.neurons.add("lif", LIF)
    with pytest.raises(RegistryError, match="snake_case"):
        reg.neurons.add("MyNeuron", _MyDynamics, _MyParams)
    with pytest.raises(RegistryError, match="params model"):
        reg.neurons.add("no_params", _MyDynamics)
    with pytest.raises(RegistryError, match="must subclass"):
        reg.neurons.add("wrong_kind", dict, _MyParams)


def test_plugins_command_lists_everything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = [p["kind"] for p in data["plugins"]]
    assert kinds.count("neuron") >= 4 and kinds.count("surrogate") >= 7 and kinds.count("encoder") >= 4
    lif = next(p for p in data["plugins"] if p["name"] == "lif")
    assert lif["distribution"] == "softspike" and lif["params"]["tau"]["default"] == 100.0
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "tau=100.0" in text and "piecewise_quadratic" in text


@pytest.mark.slow  # a child process
def test_autoload_switch_still_loads_builtins() -> None:
    code = "import softspike; r = softspike.get_registry(); print(len(r.neurons), len(r.errors))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"SOFTSPIKE_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": ""}, timeout=300)
    assert out.stdout.split() == ["5", "0"]
