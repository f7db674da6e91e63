"""The benchmark's workloads: the MNIST and conv SNNs, their data, and one training step.

Every library gets the same layers (torch's Linear/Conv2d/BatchNorm2d on the merged T·B batch),
the same initial weights, data, loss (MSE of output rates against one-hot labels) and optimizer
(Adam, lr 1e-3); only the spiking neuron differs, and for softspike also the layers fed by spikes
(`SpikeLinear`), the Poisson encoder and `compact_saved_spikes()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import peers
import torch
from torch import Tensor, nn


def spike_linear_class(lib: str) -> type[nn.Linear]:
    """Layers whose input is spikes: softspike's SpikeLinear (sparse, same parameters), else nn.Linear."""
    if lib == "softspike":
        from softspike.kernels.spike_linear import SpikeLinear

        return SpikeLinear
    return nn.Linear


def spike_conv_class(lib: str) -> type[nn.Conv2d]:
    """Conv layers whose input is spikes: softspike's SpikeConv2d (sparse, same parameters), else nn.Conv2d."""
    if lib == "softspike":
        from softspike.kernels.spike_conv import SpikeConv2d

        return SpikeConv2d
    return nn.Conv2d


class MLP(nn.Module):
    """784-196-10, LIF after each layer (the 2020 MNIST net)."""

    def __init__(self, lib: str) -> None:
        super().__init__()
        linear = spike_linear_class(lib)
        self.fc1, self.fc2 = linear(784, 196), linear(196, 10)
        self.lif1, self.lif2 = peers.make_neuron(lib), peers.make_neuron(lib)

    def forward(self, x_seq: Tensor) -> Tensor:
        self.hidden = self.lif1(self.fc1(x_seq))
        return self.lif2(self.fc2(self.hidden))


class ConvNet(nn.Module):
    """conv 3->64, BN, LIF, conv 64->64, BN, LIF, max-pool 2, linear 16384->10, LIF; 32x32 input."""

    def __init__(self, lib: str) -> None:
        super().__init__()
        self.lib = lib
        self.c1, self.b1, self.n1 = nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), peers.make_neuron(lib)
        conv = spike_conv_class(lib)
        self.c2, self.b2, self.n2 = conv(64, 64, 3, padding=1), nn.BatchNorm2d(64), peers.make_neuron(lib)
        self.fc, self.n3 = spike_linear_class(lib)(64 * 16 * 16, 10), peers.make_neuron(lib)
        if lib == "softspike":  # the same max-pool, one byte per output kept for backward
            from softspike.kernels.spike_pool import SpikeMaxPool2d

            self.pool: nn.Module = SpikeMaxPool2d(2)
        else:
            self.pool = nn.MaxPool2d(2)

    def bn_neuron(self, bn: nn.BatchNorm2d, neuron: nn.Module, y: Tensor, T: int, B: int) -> Tensor:
        """neuron(bn(y)) on [T, B, ...]; softspike runs the pair as one fused op (bn_lif)."""
        if self.lib == "softspike":
            from softspike.kernels.bn_lif import bn_neuron

            fused = bn_neuron(bn, neuron, y.unflatten(0, (T, B)))
            if fused is not None:
                return fused
        y = bn(y)
        out: Tensor = neuron(y.view(T, B, *y.shape[1:]))
        return out

    def forward(self, x_seq: Tensor) -> Tensor:
        T, B = x_seq.shape[:2]
        self.hidden = self.bn_neuron(self.b1, self.n1, self.c1(x_seq.flatten(0, 1)), T, B)
        y = self.bn_neuron(self.b2, self.n2, self.c2(self.hidden.flatten(0, 1)), T, B)
        y = self.pool(y.flatten(0, 1)).reshape(T, B, -1)
        return self.n3(self.fc(y))


class Merged(nn.Module):
    """A torch layer run once over the merged [T·B, ...] batch (what every library does for stateless layers)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.module(x.flatten(0, 1))
        return out.unflatten(0, x.shape[:2])


class Native(Merged):
    """A peer's own multi-step layer ([T, B, ...] in), keyed like Merged so the same weights load."""

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.module(x)
        return out


def _peer_layer(lib: str, layer: Any, shape: tuple[int, ...]) -> nn.Module:
    """One layer of a zoo spec for a peer: torch's layers over the merged batch (SpikingJelly: its own
    multi-step layer.Conv2d / BatchNorm2d / MaxPool2d), the library's LIF for a neuron layer."""
    kind = layer.type
    if kind == "neuron":
        return peers.make_neuron(lib)
    sj = lib == "spikingjelly"
    if sj:
        from spikingjelly.activation_based import layer as sjl
    if kind == "conv2d":
        args = (shape[0], layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
        bias = layer.bias
        return Native(sjl.Conv2d(*args, bias=bias, step_mode="m")) if sj else Merged(nn.Conv2d(*args, bias=bias))
    if kind == "batchnorm2d":
        return Native(sjl.BatchNorm2d(shape[0], step_mode="m")) if sj else Merged(nn.BatchNorm2d(shape[0]))
    if kind == "maxpool2d":
        k = layer.kernel_size
        return Native(sjl.MaxPool2d(k, step_mode="m")) if sj else Merged(nn.MaxPool2d(k))
    if kind == "flatten":
        return Merged(nn.Flatten())
    if kind == "linear":
        return Merged(nn.Linear(shape[0], layer.out_features, bias=layer.bias))
    raise ValueError(f"no peer layer for {kind}")


class SpecNet(nn.Module):
    """A zoo spec's layers on [T, B, ...] input. softspike: the network its builder makes (spike-input
    convs, batch norm fused into the neuron); peers: the same layers in torch (see _peer_layer).
    `hidden` keeps the first neuron layer's spikes of the last call."""

    def __init__(self, lib: str, name: str) -> None:
        super().__init__()
        from softspike.models import build, load_spec

        checked = load_spec(name)
        if lib == "softspike":
            self.body = build(checked).body
        else:
            self.body = nn.Sequential(*(_peer_layer(lib, info.layer, info.in_shape) for info in checked.layers))
        first = next(i for i, info in enumerate(checked.layers) if info.layer.type == "neuron")
        self.body[first].register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, args: object, out: Tensor) -> None:
        self.hidden = out

    def forward(self, x_seq: Tensor) -> Tensor:
        out: Tensor = self.body(x_seq)
        return out


#: The spec-built conv cases: kind -> zoo spec.
SPEC_KINDS = {"cifar": "cifar10_conv"}


def model_for(lib: str, kind: str) -> nn.Module:
    if kind == "mlp":
        return MLP(lib)
    if kind in SPEC_KINDS:
        return SpecNet(lib, SPEC_KINDS[kind])
    return ConvNet(lib)


def init_like(model: nn.Module, ref: dict[str, Tensor]) -> nn.Module:
    model.load_state_dict(ref, strict=False)
    return model


def reference_weights(kind: str) -> dict[str, Tensor]:
    torch.manual_seed(0)
    if kind == "mlp":
        m = MLP("plain")
        with torch.no_grad():  # gains that make both layers fire (see the printed rates)
            m.fc1.weight.mul_(6.0)
            m.fc1.bias.fill_(0.1)
            m.fc2.weight.mul_(6.0)
    elif kind in SPEC_KINDS:
        m = SpecNet("plain", SPEC_KINDS[kind])
        with torch.no_grad():  # a readout that fires from the first steps on
            [lin for lin in m.modules() if isinstance(lin, nn.Linear)][-1].weight.mul_(20.0)
    else:
        m = ConvNet("plain")
        with torch.no_grad():
            m.fc.weight.mul_(20.0)
    return {k: v.clone() for k, v in m.state_dict().items()}


def encode(lib: str, x: Tensor, T: int) -> Tensor:
    if lib == "softspike":
        from softspike.plugins.encoders import PoissonEncoder

        return PoissonEncoder().encode(x, T)
    return (torch.rand(T, *x.shape, device=x.device) < x).float()


def mnist_batch(B: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, 784, generator=g) * (torch.rand(B, 784, generator=g) < 0.2)
    return x, torch.randint(0, 10, (B,), generator=g)


def make_step(lib: str, kind: str, T: int, B: int, device: str = "cpu") -> tuple[Callable[[], float], nn.Module]:
    """One training step of `lib`'s model on `device`; returns (step, model)."""
    model: nn.Module
    if kind == "mlp":
        model = init_like(MLP(lib), reference_weights("mlp")).to(device)
        x, y = (t.to(device) for t in mnist_batch(B))

        def inputs() -> Tensor:
            return encode(lib, x, T)
    else:
        model = init_like(model_for(lib, kind), reference_weights(kind)).to(device)
        g = torch.Generator().manual_seed(2)
        img = torch.rand(B, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, 10, (B,), generator=g).to(device)

        def inputs() -> Tensor:
            return img.unsqueeze(0).expand(T, *img.shape)
    target = nn.functional.one_hot(y, 10).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def forward() -> Tensor:
        out = model(inputs())
        return nn.functional.mse_loss(out.mean(0), target)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        if lib == "softspike":
            from softspike.kernels.bitpack import compact_saved_spikes

            with compact_saved_spikes():
                loss = forward()
        else:
            loss = forward()
        loss.backward()
        opt.step()
        return float(loss.detach())

    step.forward = forward
    return step, model


if __name__ == "__main__":
    peers.library_help(__doc__)
