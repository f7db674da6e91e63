"""PyTorch sees through the kernels: torch.compile(fullgraph=True), torch.export and torch.func on
spec networks, neurons (every path, both step modes) and the spike op."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources

import pytest
import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from softspike.core.neuron import Neuron
from softspike.core.surrogate import spike
from softspike.kernels import native
from softspike.models import SpikingNetwork, build, check_spec
from softspike.plugins import surrogates as sg
from softspike.plugins.neurons import LIF, ParametricLIF

NATIVE = native.load() is not None
PATHS = ["native", "torch", "reference"] if NATIVE else ["torch", "reference"]


def small_mnist_fc(T: int = 4, hidden: int = 64) -> SpikingNetwork:
    """The zoo's mnist_fc (Poisson input, spike-input linear layers, LIF) with fewer steps and
    units, so compiling stays quick; weights scaled up so that every layer fires."""
    spec = json.loads((resources.files("softspike.models.zoo") / "mnist_fc.json").read_text())
    spec["T"], spec["layers"][1]["out_features"] = T, hidden
    torch.manual_seed(0)
    net = build(check_spec(spec))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(8.0)
    return net


def run(net: Callable[[Tensor], Tensor], module: torch.nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    module.zero_grad()
    torch.manual_seed(1)
    out = net(x)
    out.square().sum().backward()
    return out.detach(), [p.grad.clone() for p in module.parameters()]  # type: ignore[union-attr]


def test_compile_fullgraph_spec_network_matches_eager() -> None:
    net = small_mnist_fc()
    x = torch.rand(4, 1, 28, 28)
    torch._dynamo.reset()
    # fallback_random: the compiled graph draws the Poisson seeds from torch's generator, as eager does.
    # compile_threads=1: no pool of compiler processes to start (most of the time on 2 cores).
    with torch._inductor.config.patch(fallback_random=True, compile_threads=1):
        compiled = torch.compile(net, fullgraph=True)  # raises on any graph break
        got = run(compiled, net, x)
    want = run(net, net, x)
    torch._dynamo.reset()
    assert float(want[0].sum()) > 0 and all(float(g.abs().sum()) > 0 for g in want[1])
    assert torch.equal(got[0], want[0])
    for a, b in zip(got[1], want[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_export_spec_network() -> None:
    net = small_mnist_fc()
    x = torch.rand(3, 1, 28, 28)
    program = torch.export.export(net, (x,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    expected = {"softspike.poisson.default"}  # on every path; the others where the kernels are built
    if NATIVE:
        expected |= {"softspike.spike_linear.default", "softspike.lif_multistep.default"}
    assert expected <= targets, targets  # each kernel is one node
    torch.manual_seed(2)
    got = program.module()(x)
    torch.manual_seed(2)
    assert torch.equal(got, net(x))


# -- torch.func ------------------------------------------------------------------------------------


def test_func_grad_and_vmap_of_the_spike_op() -> None:
    gate = sg.Sigmoid(3.0)
    x = torch.randn(5, 7)
    assert torch.equal(grad(lambda v: spike(v, gate).sum())(x), gate.derivative(x))
    assert torch.equal(vmap(lambda v: spike(v, gate))(x), (x >= 0).float())
    per_row = vmap(grad(lambda v: (spike(v, gate) * v).sum()))(x)
    x_ = x.clone().requires_grad_()
    (spike(x_, gate) * x_).sum().backward()
    torch.testing.assert_close(per_row, x_.grad)


def _neuron(path: str, plif: bool) -> Neuron:
    return Neuron(ParametricLIF() if plif else LIF(2.0), step_mode="m", backend=path)


def _loss(neuron: Neuron) -> Callable[[dict[str, Tensor], Tensor], Tensor]:
    def loss(params: dict[str, Tensor], v: Tensor) -> Tensor:
        return functional_call(neuron, params, (v,)).square().sum()

    return loss


@pytest.mark.parametrize("plif", [False, True])
@pytest.mark.parametrize("path", PATHS)
def test_func_on_a_multistep_neuron(path: str, plif: bool) -> None:
    """grad of the input, vmap of the forward and of the gradient over a batch dim, against autograd."""
    neuron = _neuron(path, plif)
    x = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(4)) + 0.5

    def loss(v: Tensor) -> Tensor:
        return neuron(v).square().sum()

    g_x = grad(loss)(x)
    x_ = x.clone().requires_grad_()
    loss(x_).backward()
    torch.testing.assert_close(g_x, x_.grad)
    xs = torch.stack([x, x * 0.5 + 0.3, x.flip(-1)])
    assert torch.equal(vmap(neuron)(xs), torch.stack([neuron(v) for v in xs]))
    per_sample = vmap(grad(loss))(xs)
    for v, gv in zip(xs, per_sample):
        torch.testing.assert_close(gv, grad(loss)(v))
    assert neuron.backend_used == path


def test_func_grad_of_a_learnable_time_constant() -> None:
    for path in PATHS:
        neuron = _neuron(path, plif=True)
        x = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(5)) + 0.5
        params = {k: p.detach() for k, p in neuron.named_parameters()}
        g = grad(_loss(neuron))(params, x)
        neuron(x).square().sum().backward()
        for k, p in neuron.named_parameters():
            torch.testing.assert_close(g[k], p.grad)
        assert float(neuron.dynamics.w.grad.abs()) > 0, path  # type: ignore[union-attr]


@pytest.mark.parametrize("path", PATHS)
def test_func_per_sample_grads_of_a_learnable_time_constant(path: str) -> None:
    neuron = _neuron(path, plif=True)
    xs = torch.randn(3, 6, 2, 5, generator=torch.Generator().manual_seed(6)) + 0.5
    params = {k: p.detach() for k, p in neuron.named_parameters()}
    per_sample = vmap(grad(_loss(neuron)), in_dims=(None, 0))(params, xs)
    for i, v in enumerate(xs):
        one = grad(_loss(neuron))(params, v)
        for k in params:
            torch.testing.assert_close(per_sample[k][i], one[k])


def test_func_on_a_single_step_neuron() -> None:
    neuron = Neuron(LIF(2.0))  # step_mode="s": one step per call from rest after reset()
    x = torch.randn(3, 5) + 0.8

    def one_step(v: Tensor) -> Tensor:
        neuron.reset()
        out = neuron(v)
        neuron.reset()  # no transformed tensor stays on the module
        return out

    g = grad(lambda v: one_step(v).sum())(x)
    torch.testing.assert_close(g, neuron.surrogate.derivative(x / 2.0 - 1.0) / 2.0)
    assert torch.equal(vmap(one_step)(x), torch.stack([one_step(v) for v in x]))
