"""Every zoo spec validates, builds, and takes one training step (tiny batch, few time steps)."""

from __future__ import annotations

import json

import pytest
import torch

from softspike.cli import main
from softspike.models import build, check_spec, count_parameters, load_spec, zoo_names
from softspike.models.load import read_spec_text
from softspike.train.loop import readout_loss

ZOO = zoo_names()


def test_zoo_has_the_issue_networks() -> None:
    assert {"mnist_fc", "cifar10_conv", "mnist_conv"} <= set(ZOO)


def test_mnist_fc_is_the_2020_network() -> None:
    net = build(load_spec("mnist_fc"))
    linears = [m.module for _, m in net.layer_paths if hasattr(m, "module") and isinstance(m.module, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features, lin.bias) for lin in linears] == [(784, 196, None), (196, 10, None)]
    assert len(net.neuron_layers()) == 2
    assert type(net.encoder).__name__ == "PoissonEncoder"


def test_cifar10_conv_is_the_2020_network() -> None:
    checked = load_spec("cifar10_conv")
    convs = [i.layer for i in checked.layers if i.layer.type == "conv2d"]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(256, 3)] * 6
    assert sum(i.layer.type == "maxpool2d" for i in checked.layers) == 3
    linear = [i for i in checked.layers if i.layer.type == "linear"]
    assert len(linear) == 1 and linear[0].in_shape == (4096,) and linear[0].out_shape == (10,)
    assert checked.spec.encoder.type == "constant"


@pytest.mark.parametrize("name", ZOO)
def test_zoo_spec_validates(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    # An explicit limit: cifar10_conv needs ~11 GiB at the default batch size, more than some CI machines have.
    assert main(["validate", name, "--max-memory", "1TiB"]) == 0
    assert ": ok: network" in capsys.readouterr().out


@pytest.mark.parametrize("name", ZOO)
def test_zoo_spec_trains_one_step(name: str) -> None:
    data = json.loads(read_spec_text(name)[0])
    if name == "cifar10_conv":
        data["T"] = 1  # the full network at T=8 is a benchmark, not a unit test
    checked = check_spec(data, name)
    torch.manual_seed(0)
    net = build(checked)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.rand(2, *checked.spec.input_shape)
    y = torch.tensor([0, 1])
    rates = net.spikes(x).mean(0)
    assert rates.shape == (2, checked.num_classes)
    loss = readout_loss(net, rates, y, "cross_entropy")
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


@pytest.mark.parametrize("name", ZOO)
def test_summary_total_matches_the_module(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", name, "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    net = build(load_spec(name))
    total_row = next(line for line in out.splitlines() if line.startswith("total "))
    assert total_row.split()[1] == f"{count_parameters(net):,}"
