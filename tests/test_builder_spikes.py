"""The builder gives layers fed by spikes the sparse SpikeLinear, and only those."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from softspike.kernels.spike_linear import SpikeLinear
from softspike.models import load_spec
from softspike.models.builder import build
from softspike.models.load import check_spec


def _linears(net: nn.Module) -> list[type]:
    return [type(m) for m in net.modules() if isinstance(m, nn.Linear)]


def test_linear_layers_after_spikes_are_spike_linear() -> None:
    assert _linears(build(load_spec("mnist_fc"))) == [SpikeLinear, SpikeLinear]
    doc = {"name": "analog", "input_shape": [4], "T": 2, "encoder": {"type": "constant"},
           "layers": [{"type": "linear", "out_features": 3}, {"type": "neuron", "neuron": {"type": "if"}},
                      {"type": "dropout", "p": 0.5}, {"type": "linear", "out_features": 2},
                      {"type": "neuron", "neuron": {"type": "if"}}]}
    # Constant input is analog, and dropout rescales the spikes it keeps: both get a plain Linear.
    assert _linears(build(check_spec(doc, "<test>"))) == [nn.Linear, nn.Linear]


def test_spike_linear_trains_like_linear() -> None:
    torch.manual_seed(0)
    net = build(load_spec("mnist_fc"))
    x = (torch.rand(4, 1, 28, 28) < 0.3).float()
    out = net.spikes(x)
    assert out.shape == (8, 4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_spec_parts_are_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import softspike.core.registry as registry_module
    import softspike.plugins.neurons as builtin

    doc = {"name": "once", "input_shape": [4], "T": 2, "encoder": {"type": "delta", "threshold": 0.3},
           "layers": [{"type": "linear", "out_features": 3},
                      {"type": "neuron", "neuron": {"type": "cuba_lif", "tau_mem": 3.0},
                       "surrogate": {"type": "atan", "alpha": 3.0}}]}
    checked = check_spec(doc, "<test>")  # pydantic validates every part here, once
    calls: list[str] = []
    for module in (registry_module, builtin):
        real = module.validate_params
        monkeypatch.setattr(module, "validate_params", lambda *a, real=real: calls.append(a[1]) or real(*a))
    net = build(checked)
    neuron = dict(net.neuron_layers())["layers[1]"]
    assert calls == []
    assert neuron.dynamics.tau_mem == 3.0 and neuron.surrogate.alpha == 3.0 and net.encoder.threshold == 0.3
