"""The spike-input convolution equals nn.Conv2d: outputs and gradients to float32 rounding, over shapes,
strides, padding, dilation, groups and densities 0..1; the dense ChannelsLastConv2d equals it exactly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from softspike.kernels import native
from softspike.kernels import spike_conv as sc

pytestmark = pytest.mark.skipif(native.load() is None, reason="the compiled kernels are not available here")


@st.composite
def cases(draw: st.DrawFn) -> tuple[int, ...]:
    groups = draw(st.sampled_from([1, 2]))
    c_in = groups * draw(st.integers(1, 3))
    og = draw(st.sampled_from([1, 3, 16, 32]))  # 16 and 32 take the register kernels
    k, d = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    h, w = draw(st.integers(d * (k - 1) + 1, 7)), draw(st.integers(d * (k - 1) + 1, 7))
    return (draw(st.integers(1, 3)), c_in, h, w, groups * og, k, draw(st.integers(1, 2)), draw(st.integers(0, 2)), d,
            groups)


@given(cases(), st.floats(0.0, 1.0), st.booleans(), st.booleans(), st.integers(0, 2**31))
def test_spike_conv_matches_conv2d(case: tuple[int, ...], density: float, channels_last: bool, bias: bool,
                                   seed: int) -> None:
    n, c, h, w, o, k, s, p, d, g = case
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, c, h, w, generator=gen) < density).float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ref = torch.nn.Conv2d(c, o, k, s, p, d, g, bias=bias)
    mine = sc.SpikeConv2d(c, o, k, s, p, d, g, bias=bias)
    mine.load_state_dict(ref.state_dict())
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ref(xa), mine(xb)
    torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
    gy = torch.randn(ya.shape, generator=gen)
    ya.backward(gy)
    yb.backward(gy)
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    if bias:
        torch.testing.assert_close(mine.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (2, 1, 28, 28), (3, 2, 7, 9)])
def test_channels_last_conv_equals_conv2d(shape: tuple[int, int, int, int]) -> None:
    """The analog first layer: the same values as nn.Conv2d, written channels-last; its gradients too."""
    torch.manual_seed(0)
    ref = torch.nn.Conv2d(shape[1], 16, 3, padding=1)
    mine = sc.ChannelsLastConv2d(shape[1], 16, 3, padding=1)
    mine.load_state_dict(ref.state_dict())
    x = torch.rand(shape)
    ya, yb = ref(x), mine(x)
    assert torch.equal(yb, ya)
    # one input channel: the weight's two layouts are the same strides, so torch keeps NCHW
    assert yb.is_contiguous(memory_format=torch.channels_last) or shape[1] == 1
    assert mine.weight.is_contiguous()  # the parameter keeps its layout
    gy = torch.randn(ya.shape)
    ya.backward(gy)
    yb.backward(gy)
    torch.testing.assert_close(mine.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine.bias.grad, ref.bias.grad, rtol=1e-5, atol=1e-5)


def test_non_binary_input_runs_dense() -> None:
    x = torch.rand(2, 3, 6, 6, requires_grad=True)
    ref, mine = torch.nn.Conv2d(3, 16, 3, padding=1), sc.SpikeConv2d(3, 16, 3, padding=1)
    mine.load_state_dict(ref.state_dict())
    torch.testing.assert_close(mine(x), ref(x))
    mine(x).sum().backward()
    g = mine.weight.grad.clone()
    ref(x).sum().backward()
    torch.testing.assert_close(g, ref.weight.grad, rtol=1e-5, atol=1e-5)


def test_binary_input_saves_bits_only() -> None:
    x = (torch.rand(4, 8, 10, 10) < 0.1).float().requires_grad_()
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = sc.SpikeConv2d(8, 16, 3, padding=1)(x)
    assert not any(t.dtype == torch.float32 and t.shape == x.shape for t in saved)
    y.sum().backward()


def test_compile_export_and_func() -> None:
    conv = sc.SpikeConv2d(4, 16, 3, padding=1)
    x = (torch.rand(2, 4, 6, 6) < 0.2).float()
    want = conv(x)
    torch._dynamo.reset()
    with torch._inductor.config.patch(compile_threads=1):
        got = torch.compile(conv, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(got, want)
    program = torch.export.export(conv, (x,))
    assert "softspike.spike_conv2d.default" in {str(n.target) for n in program.graph.nodes}
    torch.testing.assert_close(program.module()(x), want)
    params = {k: v.detach() for k, v in conv.named_parameters()}
    g = torch.func.grad(lambda p: torch.func.functional_call(conv, p, (x,)).square().sum())(params)
    conv.zero_grad()
    conv(x).square().sum().backward()
    torch.testing.assert_close(g["weight"], conv.weight.grad, rtol=1e-5, atol=1e-5)
