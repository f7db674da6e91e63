"""The spec language: schema export, plugins joining the language, inferred sizes, input errors."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest
import torch
from pydantic import Field
from torch import Tensor

from softspike.cli import main
from softspike.core.dynamics import Dynamics, State
from softspike.core.params import Params
from softspike.core.registry import get_registry
from softspike.models import InputError, SpecError, build, check_spec, json_schema

TINY: dict[str, Any] = {
    "name": "tiny", "input_shape": [1, 6, 6], "T": 3, "encoder": {"type": "constant"},
    "layers": [
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "batchnorm2d"},
        {"type": "neuron", "neuron": {"type": "if"}, "v_reset": None},
        {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
                                        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}}]},
        {"type": "avgpool2d", "kernel_size": 2},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.1},
        {"type": "linear", "out_features": 3},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "surrogate": {"type": "atan", "alpha": 2.0}},
    ],
}


def test_sizes_are_inferred_from_the_input_shape() -> None:
    checked = check_spec(TINY)
    shapes = {i.path: i.out_shape for i in checked.layers}
    assert shapes["layers[3]"] == (2, 6, 6)
    assert shapes["layers[4]"] == (2, 3, 3)
    assert shapes["layers[5]"] == (18,)
    net = build(checked)
    out = net(torch.rand(4, 1, 6, 6))
    assert out.shape == (4, 3)
    assert net.spikes(torch.rand(4, 1, 6, 6)).shape == (3, 4, 3)
    assert {p for p, _ in net.neuron_layers()} == {"layers[2]", "layers[3].layers[1]", "layers[8]"}


def test_residual_adds_its_input() -> None:
    net = build(check_spec(TINY))
    block = dict(net.layer_paths)["layers[3]"]
    x = torch.rand(2, 5, 2, 6, 6)
    assert torch.equal(block(x), x + block.body(x))


def test_neuron_options_reach_the_module() -> None:
    net = build(check_spec(TINY))
    neurons = dict(net.neuron_layers())
    assert neurons["layers[2]"].v_reset is None
    assert type(neurons["layers[8]"].surrogate).__name__ == "ATan"
    assert neurons["layers[8]"].step_mode == "m"


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.rand(2, 1, 5, 5), "expected a batch of shape [B, 1, 6, 6]"),
        (torch.zeros(2, 1, 6, 6, dtype=torch.uint8), "floating-point"),
        ([[0.0]], "expected a torch.Tensor"),
    ],
)
def test_wrong_input_is_a_clear_error(x: Any, message: str) -> None:
    net = build(check_spec(TINY))
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        net(x)


def test_poisson_input_out_of_range_is_a_clear_error() -> None:
    spec = dict(TINY, encoder={"type": "poisson"})
    with pytest.raises(InputError, match="intensities must lie in"):
        build(check_spec(spec))(torch.full((1, 1, 6, 6), 3.0))


def test_schema_command_prints_the_language(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    text = json.dumps(schema)
    for name in ("lif", "parametric_lif", "sigmoid", "atan", "poisson", "latency", "residual", "conv2d"):
        assert f'"{name}"' in text
    assert schema["properties"]["T"]["minimum"] == 1
    assert schema["additionalProperties"] is False


class Bursty(Dynamics):
    """A test plugin: H = V + 2X."""

    class Params(Params):
        gain: float = Field(2.0, gt=0)

    ParamsModel: ClassVar[type[Params]] = Params

    def __init__(self, gain: float = 2.0) -> None:
        super().__init__()
        self.gain = gain

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        return state["v"] + self.gain * x, state


def test_a_plugin_added_to_the_registry_joins_the_language() -> None:
    registry = get_registry()
    registry.neurons.add("bursty_test", Bursty)
    try:
        spec = json.loads(json.dumps(TINY))
        spec["layers"][2]["neuron"] = {"type": "bursty_test", "gain": 3.0}
        net = build(check_spec(spec))
        assert dict(net.neuron_layers())["layers[2]"].dynamics.gain == 3.0
        spec["layers"][2]["neuron"] = {"type": "bursty_test", "gain": -1}
        with pytest.raises(SpecError, match=r"layers\[2\].neuron.gain: must be > 0"):
            check_spec(spec)
        assert "bursty_test" in json.dumps(json_schema())
    finally:
        registry.neurons.remove("bursty_test")
