"""softspike::max_pool2d equals nn.MaxPool2d bit for bit (outputs and gradients) over shapes, kernels,
strides, layouts and inputs (spikes at densities 0..1, ties, floats, NaN), and keeps one byte per output."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from softspike.kernels import native
from softspike.kernels.spike_pool import SpikeMaxPool2d

pytestmark = pytest.mark.skipif(native.load() is None, reason="the compiled kernels are not available here")


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 9), st.integers(1, 9), st.integers(1, 3),
       st.integers(1, 3), st.booleans(), st.sampled_from(["spikes", "floats", "nan"]), st.floats(0, 1),
       st.integers(0, 2**31))
def test_equals_max_pool2d(n: int, c: int, h: int, w: int, k: int, s: int, channels_last: bool, kind: str,
                           density: float, seed: int) -> None:
    k = min(k, h, w)
    gen = torch.Generator().manual_seed(seed)
    if kind == "spikes":
        x = (torch.rand(n, c, h, w, generator=gen) < density).float()
    else:
        x = torch.randint(-2, 3, (n, c, h, w), generator=gen).float()  # ties
        if kind == "nan":
            x[torch.rand(x.shape, generator=gen) < density / 4] = float("nan")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = nn.MaxPool2d(k, s)(xa), SpikeMaxPool2d(k, s)(xb)
    assert torch.equal(ya.nan_to_num(7.0), yb.nan_to_num(7.0))
    layout = torch.channels_last if not x.is_contiguous() else torch.contiguous_format
    assert yb.is_contiguous(memory_format=layout)
    g = torch.randn(ya.shape, generator=gen)
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(xa.grad, xb.grad)
    assert xb.grad.is_contiguous(memory_format=layout)


def test_saves_bytes_not_indices_and_falls_back() -> None:
    x = (torch.rand(4, 8, 10, 10) < 0.2).float().requires_grad_()
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = SpikeMaxPool2d(2)(x)
    assert [t.dtype for t in saved] == [torch.uint8]
    y.sum().backward()
    padded = SpikeMaxPool2d(3, 2, padding=1)  # padding: nn.MaxPool2d's own path
    assert torch.equal(padded(x), nn.MaxPool2d(3, 2, padding=1)(x))


def test_compile_and_export() -> None:
    pool = SpikeMaxPool2d(2)
    x = (torch.rand(2, 4, 6, 6) < 0.3).float()
    torch._dynamo.reset()
    with torch._inductor.config.patch(compile_threads=1):
        assert torch.equal(torch.compile(pool, fullgraph=True, backend="aot_eager")(x), pool(x))
    program = torch.export.export(pool, (x,))
    assert "softspike.max_pool2d.default" in {str(n.target) for n in program.graph.nodes}
