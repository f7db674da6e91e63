"""Monitors: spikes and membrane potentials of chosen layers, rates per layer and per neuron,
subsampling, and a network that runs exactly as before while and after it is monitored."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from softspike.models import build, check_spec
from softspike.monitor import Monitor, MonitorError
from softspike.neuron import LIFNode

SPEC: dict[str, Any] = {
    "name": "mon", "input_shape": [6], "T": 10, "encoder": {"type": "constant"},
    "layers": [
        {"type": "linear", "out_features": 12},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "v_threshold": 0.5, "v_reset": -0.2},
        {"type": "linear", "out_features": 4},
        {"type": "neuron", "neuron": {"type": "if"}, "v_threshold": 0.4},
    ],
}


@pytest.fixture
def net() -> Any:
    torch.manual_seed(0)
    net = build(check_spec(SPEC))
    with torch.no_grad():
        net.body[0].module.weight.mul_(3.0)
        net.body[2].module.weight.abs_().mul_(2.0)
    return net


def _x() -> torch.Tensor:
    return torch.rand(5, 6, generator=torch.Generator().manual_seed(1))


def test_membrane_is_recorded_and_the_network_runs_as_before(net: Any) -> None:
    x = _x()
    want = net.spikes(x)
    want.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    with Monitor(net, v=True) as mon:
        got = net.spikes(x)
        got.sum().backward()
    assert torch.equal(got, want)
    for p, g in zip(net.parameters(), grads):
        assert torch.allclose(p.grad, g, atol=1e-6)
    s, v = mon.spikes("layers[1]"), mon.v("layers[1]")
    assert s.shape == v.shape == (10, 5, 12) and s.device.type == "cpu"
    assert 0.05 < float(s.mean()) < 0.95
    assert torch.all(v[s == 1] == -0.2)  # hard reset to v_reset after a spike
    assert torch.all(v[s == 0] < 0.5)  # and below threshold where none
    assert torch.equal(mon.spikes("layers[3]"), want.detach())
    neuron = net.body[1]
    assert "forward" not in vars(neuron)  # the layer's own (fused) forward is back
    net.spikes(x)
    assert neuron.backend_used in ("native", "torch")


def test_rates_per_layer_and_per_neuron(net: Any) -> None:
    with Monitor(net) as mon:
        net.spikes(_x())
        net.spikes(_x())
    s = mon.spikes("layers[1]")
    assert s.shape == (10, 10, 12)  # two calls join along the batch
    assert mon.rates()["layers[1]"] == pytest.approx(float(s.mean()))
    per = mon.neuron_rates()["layers[1]"]
    assert per.shape == (12,) and torch.allclose(per, s.mean((0, 1)))
    mon.reset()
    assert mon.rates() == {}
    with pytest.raises(MonitorError, match="no spikes recorded"):
        mon.spikes("layers[1]")


def test_subsampling_bounds_memory_but_not_the_rates(net: Any) -> None:
    with Monitor(net, ["layers[1]"], v=True, neurons=4, every=3, samples=2) as small, Monitor(net) as full:
        net.spikes(_x())
    s = small.spikes("layers[1]")
    assert s.shape == small.v("layers[1]").shape == (4, 2, 4)  # steps 0, 3, 6, 9; neurons 0, 4, 7, 11
    assert torch.equal(s, full.spikes("layers[1]")[::3, :2][:, :, [0, 4, 7, 11]])
    assert small.rates()["layers[1]"] == pytest.approx(full.rates()["layers[1]"])
    with Monitor(net, "layers[1]", neurons=[2, 3]) as picked:
        net.spikes(_x())
    assert torch.equal(picked.spikes("layers[1]"), full.spikes("layers[1]")[:, :, [2, 3]])


def test_single_step_networks_record_one_step_per_call() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), LIFNode(tau=2.0, v_threshold=0.3))
    xs = torch.rand(7, 2, 3)
    with Monitor(net, v=True) as mon:
        out = torch.stack([net(x) for x in xs])
    assert mon.paths == ["1"]
    assert torch.equal(mon.spikes("1"), out.detach())
    assert mon.v("1").shape == (7, 2, 6)


def test_bad_requests_are_clear_errors(net: Any) -> None:
    with pytest.raises(MonitorError, match=r"no neuron layer 'layers\[11\]'; did you mean 'layers\[1\]'"):
        Monitor(net, ["layers[11]"])
    with pytest.raises(MonitorError, match=r"layers\[0\] is a Linear layer, not neurons \(neuron layers: layers\[1\]"):
        Monitor(net, ["layers[0]"])
    with pytest.raises(MonitorError, match="has no neuron layers"):
        Monitor(nn.Linear(2, 2))
    with pytest.raises(MonitorError, match="every must be >= 1"):
        Monitor(net, every=0)
    with Monitor(net) as mon:
        net.spikes(_x())
    with pytest.raises(MonitorError, match=r"no v recorded \(ask for it with v=True\)"):
        mon.v("layers[1]")
    with pytest.raises(MonitorError, match="is not monitored"):
        mon.spikes("layers[2]")
    with Monitor(net, v=True), pytest.raises(MonitorError, match=r"layers\[1\]: another open monitor already"):
        Monitor(net, v=True)
    assert "forward" not in vars(net.body[1])
    net.T = 4
    with Monitor(net) as mon:
        net.spikes(_x())
        net.T = 10
        net.spikes(_x())
    with pytest.raises(MonitorError, match=r"different numbers of steps \(\[4, 10\]\)"):
        mon.spikes("layers[1]")
