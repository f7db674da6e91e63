"""Batch norm fused into the neuron scan (`softspike::bn_lif`) equals nn.BatchNorm2d followed by the neuron:
spikes identical, running statistics and step count identical, gradients to float32 rounding; over
shapes, layouts, dynamics, resets, gates and momentum; and compile, export and torch.func keep working."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from softspike.core.neuron import Neuron
from softspike.kernels import native
from softspike.kernels.bn_lif import FusingSequential, fusable
from softspike.layers import MultiStep
from softspike.models import build, load_spec
from softspike.plugins.neurons import IF, LIF, ParametricLIF
from softspike.plugins.surrogates import ATan, Sigmoid

pytestmark = pytest.mark.skipif(native.load() is None, reason="the compiled kernels are not available here")


def _pair(c: int, dynamics: str = "lif", soft: bool = False, gate: str = "sigmoid", momentum: float | None = 0.1,
          dims: int = 2, gen: torch.Generator | None = None) -> nn.Sequential:
    bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(c, momentum=momentum)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0, generator=gen)
        bn.bias.uniform_(-0.5, 0.5, generator=gen)
    dyn = {"lif": lambda: LIF(2.0), "if": IF, "plif": lambda: ParametricLIF(2.0)}[dynamics]()
    surrogate = Sigmoid(4.0) if gate == "sigmoid" else ATan(2.0)
    return nn.Sequential(MultiStep(bn), Neuron(dyn, 1.0, None if soft else 0.0, surrogate, step_mode="m"))


def _compare(ref: nn.Sequential, x: torch.Tensor, steps: int = 2) -> FusingSequential:
    fused = FusingSequential(*copy.deepcopy(list(ref)))
    assert fusable(fused[0], fused[1], x) is None
    for _ in range(steps):  # the second step starts from the running statistics the first one left
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        sa, sb = ref(xa), fused(xb)
        assert torch.equal(sa, sb)
        g = torch.randn_like(sa)
        sa.backward(g)
        sb.backward(g)
        torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-4, atol=1e-5)
        for (name, pa), pb in zip(ref.named_parameters(), fused.parameters()):
            torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-4, atol=1e-4, msg=name)
        for (name, ba), bb in zip(ref.named_buffers(), fused.buffers()):
            assert torch.equal(ba, bb), name
    return fused


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.integers(1, 4), st.integers(1, 4),
       st.booleans(), st.sampled_from(["lif", "if", "plif"]), st.booleans(), st.sampled_from(["sigmoid", "atan"]),
       st.sampled_from([0.1, 1.0, None]), st.integers(0, 2**31))
def test_fused_equals_batch_norm_then_neuron(T: int, B: int, C: int, H: int, W: int, channels_last: bool,
                                             dynamics: str, soft: bool, gate: str, momentum: float | None,
                                             seed: int) -> None:
    if T * B * H * W < 2:
        T = 2
    gen = torch.Generator().manual_seed(seed)
    ref = _pair(C, dynamics, soft, gate, momentum, gen=gen)
    x = torch.randn(T * B, C, H, W, generator=gen) * 2 + 0.5
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    _compare(ref, x.unflatten(0, (T, B)))


def test_batch_norm_1d_and_a_non_dense_input() -> None:
    gen = torch.Generator().manual_seed(1)
    _compare(_pair(6, dims=1, gen=gen), torch.randn(3, 4, 6, generator=gen) * 2 + 0.5)
    wide = torch.randn(3, 4, 5, 6, 7, generator=gen)
    _compare(_pair(5, gen=gen), wide[..., ::2])  # strided: copied once, same results


def test_spikes_layout_follows_the_input() -> None:
    x = torch.randn(8, 6, 4, 4).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 4))
    s = FusingSequential(*_pair(6))(x)
    assert s.stride() == x.stride()


def test_when_it_does_not_fuse() -> None:
    pair = _pair(4)
    x = torch.randn(2, 3, 4, 5, 5)
    pair[0].eval()
    assert "eval" in (fusable(pair[0], pair[1], x) or "")
    pair[0].train()
    assert fusable(pair[0], pair[1], x.double()) is not None
    pair[1].backend = "torch"
    assert "torch backend" in (fusable(pair[0], pair[1], x) or "")
    assert fusable(pair[1], pair[0], x) is not None  # neuron, then batch norm
    fused = FusingSequential(*_pair(4)).eval()
    torch.testing.assert_close(fused(x), nn.Sequential(*fused)(x))  # eval: the modules one by one


def test_spec_networks_fuse_and_train_as_before() -> None:
    torch.manual_seed(0)
    net = build(load_spec("mnist_conv"))
    assert isinstance(net.body, FusingSequential)
    ref = copy.deepcopy(net)
    ref.body = nn.Sequential(*ref.body)  # the same modules, run one by one
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(1)
    ya = ref(x)
    torch.manual_seed(1)  # the same dropout mask
    yb = net(x)
    assert torch.equal(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    for (name, pa), pb in zip(ref.named_parameters(), net.parameters()):
        torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-3, atol=1e-4, msg=name)
    for (name, ba), bb in zip(ref.named_buffers(), net.buffers()):
        assert torch.equal(ba, bb), name
    part = net.body[1:3]  # a slice (a pipeline stage) holds the same modules and still fuses
    assert isinstance(part, FusingSequential) and all(a is b for a, b in zip(part, list(net.body)[1:3]))


def test_compile_export_and_func() -> None:
    fused = FusingSequential(*_pair(4))
    x = torch.randn(2, 3, 4, 5, 5)
    want = copy.deepcopy(fused)(x)
    torch._dynamo.reset()
    with torch._inductor.config.patch(compile_threads=1):
        got = torch.compile(copy.deepcopy(fused), fullgraph=True, backend="aot_eager")(x)
    assert torch.equal(got, want)
    program = torch.export.export(copy.deepcopy(fused), (x,))
    assert "softspike.bn_lif.default" in {str(n.target) for n in program.graph.nodes}
    params = {k: v.detach() for k, v in fused.named_parameters()}
    buffers = {k: v.clone() for k, v in fused.named_buffers()}

    def loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.func.functional_call(fused, {**p, **b}, (x,)).sum()

    grads = torch.func.grad(loss)(params, buffers)  # under the transform the modules run one by one
    ref = copy.deepcopy(fused)
    nn.Sequential(*ref)(x).sum().backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-4)


def test_hooks_monitors_and_replaced_forwards() -> None:
    fused = FusingSequential(*_pair(4))
    x = torch.randn(2, 3, 4, 5, 5)
    seen: list[torch.Tensor] = []
    handle = fused[1].register_forward_hook(lambda m, args, out: seen.append(out))
    assert fusable(fused[0], fused[1], x) is None  # a monitor on the neuron: still fused, still called
    out = fused(x)
    assert len(seen) == 1 and seen[0] is out
    handle.remove()
    handle = fused[0].register_forward_hook(lambda m, args, out: None)
    assert "hook" in (fusable(fused[0], fused[1], x) or "")  # the batch norm's output must exist: unfused
    handle.remove()
    fused[1].forward = fused[1].multi_step  # a monitor recording V replaces the forward
    assert "forward" in (fusable(fused[0], fused[1], x) or "")
