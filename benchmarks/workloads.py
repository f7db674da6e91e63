"""The benchmark's workloads: the MNIST and conv SNNs, their data, and one training step.

Every library gets the same layers (torch's Linear/Conv2d/BatchNorm2d on the merged T·B batch),
the same initial weights, data, loss (MSE of output rates against one-hot labels) and optimizer
(Adam, lr 1e-3); only the spiking neuron differs, and for softspike also the layers fed by spikes
(`SpikeLinear`), the Poisson encoder and `compact_saved_spikes()`.
"""

from __future__ import annotations

from collections.abc import Callable

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
        self.c1, self.b1, self.n1 = nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), peers.make_neuron(lib)
        conv = spike_conv_class(lib)
        self.c2, self.b2, self.n2 = conv(64, 64, 3, padding=1), nn.BatchNorm2d(64), peers.make_neuron(lib)
        self.fc, self.n3 = spike_linear_class(lib)(64 * 16 * 16, 10), peers.make_neuron(lib)

    def forward(self, x_seq: Tensor) -> Tensor:
        T, B = x_seq.shape[:2]
        y = self.b1(self.c1(x_seq.flatten(0, 1)))
        self.hidden = self.n1(y.view(T, B, *y.shape[1:]))
        y = self.b2(self.c2(self.hidden.flatten(0, 1)))
        y = self.n2(y.view(T, B, *y.shape[1:]))
        y = nn.functional.max_pool2d(y.flatten(0, 1), 2).reshape(T, B, -1)
        return self.n3(self.fc(y))


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
        model = init_like(ConvNet(lib), reference_weights("conv")).to(device)
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

    step.forward = forward  # type: ignore[attr-defined]
    return step, model


if __name__ == "__main__":
    peers.library_help(__doc__)
