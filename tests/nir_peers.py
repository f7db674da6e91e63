"""What the NIR peer tests share (tests/test_nir_norse.py, tests/test_nir_snntorch.py): softspike networks
that spike in every layer, and the check that a peer gives softspike's spikes batched and per sample."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from softspike.models.builder import build
from softspike.models.load import CheckedSpec, check_spec, load_spec
from softspike.models.network import SpikingNetwork

T, B = 12, 5


def conv_spec(pool: bool) -> dict[str, Any]:
    """A small conv network: conv (bias) -> LIF -> [avgpool] -> flatten -> linear -> LIF, hard reset to 0
    (the only reset Norse's and snnTorch's importers build)."""
    lif = {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "v_threshold": 0.7}
    layers: list[dict[str, Any]] = [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, lif]
    if pool:
        layers.append({"type": "avgpool2d", "kernel_size": 2})
    layers += [{"type": "flatten"}, {"type": "linear", "out_features": 5},
               {**lif, "neuron": {"type": "lif", "tau": 3.0}, "v_threshold": 0.5}]
    return {"name": "peer_conv", "input_shape": [2, 6, 6], "T": T, "encoder": {"type": "constant"}, "layers": layers}


def lively(spec: str | dict[str, Any]) -> tuple[CheckedSpec, SpikingNetwork]:
    """The spec's network with weights large enough that every layer spikes (default inits leave the
    output layer nearly silent, which would make an equality of spikes mean little)."""
    checked = load_spec(spec) if isinstance(spec, str) else check_spec(spec)
    net = build(checked).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 3.0 / max(p[0].numel(), 1) ** 0.5 if p.dim() > 1 else 0.2)
    return checked, net


def inputs(checked: CheckedSpec, seed: int = 3) -> torch.Tensor:
    """[T, B, *sample]: what the encoder would hand the first layer at each step."""
    return torch.rand(T, B, *checked.step_shape, generator=torch.Generator().manual_seed(seed)) * 1.5


def same_spikes_batched_and_per_sample(net: SpikingNetwork, x: torch.Tensor,
                                       run_peer: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """The peer, run on the whole batch and on each sample alone (a batch of one), gives softspike's spikes.

    `run_peer` takes [T, B, *sample] and returns the peer's output spikes, [T, B, classes]."""
    with torch.no_grad():
        want = net.body(x)
    assert 0.05 < float(want.mean()) < 0.95  # a silent network would pass vacuously
    got = run_peer(x)
    assert got.shape == want.shape, f"batched: the peer gave {list(got.shape)}, softspike {list(want.shape)}"
    assert torch.equal(got, want), f"batched: {int((got != want).sum())} of {want.numel()} spikes differ"
    for i in range(x.shape[1]):
        alone = run_peer(x[:, i:i + 1])
        assert torch.equal(alone, want[:, i:i + 1]), f"sample {i} alone: {int((alone != want[:, i:i + 1]).sum())} " \
            "spikes differ"
