"""Encoders: rate, latency, delta and constant codes do what their names say."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import softspike
from softspike import encoding


@given(p=st.floats(0.0, 1.0))
def test_poisson_rate_converges_to_the_intensity(p: float) -> None:
    torch.manual_seed(0)
    n = 20000
    rate = encoding.PoissonEncoder().encode(torch.tensor([p]), n).mean().item()
    assert abs(rate - p) <= 5 * (p * (1 - p) / n) ** 0.5 + 1e-9


def test_poisson_single_step_is_the_2020_api() -> None:
    enc = encoding.PoissonEncoder()
    x = torch.rand(4, 5)
    s = enc(x)
    assert s.shape == x.shape and set(s.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(enc(torch.ones(3)), torch.ones(3)) and torch.equal(enc(torch.zeros(3)), torch.zeros(3))


@given(x=st.lists(st.floats(0.001, 1.0), min_size=2, max_size=10), T=st.integers(2, 30))
def test_latency_fires_once_and_earlier_for_larger_input(x: list[float], T: int) -> None:
    xt = torch.tensor(x)
    s = encoding.LatencyEncoder().encode(xt, T)
    assert torch.equal(s.sum(0), torch.ones(len(x)))
    t_first = s.argmax(0)
    order = torch.argsort(xt)
    assert torch.all(t_first[order][1:] <= t_first[order][:-1])  # larger intensity, no later spike


def test_latency_zero_never_fires_and_single_step_needs_t() -> None:
    assert encoding.LatencyEncoder().encode(torch.zeros(3), 5).sum() == 0
    enc = encoding.LatencyEncoder(T=4)
    steps = torch.stack([enc(torch.tensor([1.0, 0.5])) for _ in range(4)])
    assert torch.equal(steps, encoding.LatencyEncoder().encode(torch.tensor([1.0, 0.5]), 4))
    with pytest.raises(ValueError, match="T"):
        encoding.LatencyEncoder()(torch.tensor([0.5]))


def test_delta_fires_on_changes() -> None:
    signal = torch.tensor([0.0, 0.05, 0.5, 0.5, 0.1])
    assert encoding.DeltaEncoder(threshold=0.1).encode_sequence(signal).tolist() == [0, 0, 1, 0, 0]
    assert encoding.DeltaEncoder(threshold=0.1, off_spikes=True).encode_sequence(signal).tolist() == [0, 0, 1, 0, 1]
    enc = encoding.DeltaEncoder(threshold=0.1)
    assert [enc(torch.tensor([v])).item() for v in signal.tolist()] == [0, 0, 1, 0, 0]
    static = enc.encode(torch.tensor([0.7]), 3)
    assert static.flatten().tolist() == [1.0, 0.0, 0.0]


def test_constant_repeats_the_input() -> None:
    x = torch.randn(2, 3)
    assert torch.equal(encoding.ConstantEncoder().encode(x, 4), x.expand(4, 2, 3))


def test_encoders_reject_bad_input_clearly() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        encoding.PoissonEncoder().encode(torch.tensor([2.0]), 3)
    with pytest.raises(TypeError, match="floating-point"):
        encoding.PoissonEncoder().encode(torch.tensor([1]), 3)
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        encoding.PoissonEncoder().encode(torch.tensor([0.5]), 0)
    with pytest.raises(ValueError, match="threshold"):
        encoding.DeltaEncoder(threshold=0)


def test_reset_clears_encoder_state() -> None:
    enc = encoding.DeltaEncoder()
    net = torch.nn.Sequential(enc)
    enc(torch.tensor([1.0]))
    softspike.reset(net)
    assert enc.previous is None
