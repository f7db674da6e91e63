"""Encoders turn analog input into spike trains.

`encode(x, T)` returns [T, *x.shape] from a fresh start (multi-step, what spec networks use);
calling the encoder, `enc(x)`, gives one time step per call, as in the 2020 API, with any state
(a step counter, the previous input) kept until `reset()`.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor, nn


class Encoder(nn.Module, metaclass=abc.ABCMeta):
    """Base of every encoder. Subclasses define `encode(x, T)`; stateless ones are done."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0
        self._seq: Tensor | None = None

    @abc.abstractmethod
    def encode(self, x: Tensor, T: int) -> Tensor:
        """Spike train [T, *x.shape] for input `x`."""

    def forward(self, x: Tensor) -> Tensor:
        """One time step. Encoders whose output depends on time override `steps_per_sample`."""
        T = self.steps_per_sample()
        if T is None:
            return self.encode(x, 1)[0]
        if self._seq is None or self._seq.shape[1:] != x.shape or self.t >= T:
            self._seq, self.t = self.encode(x, T), 0
        out = self._seq[self.t]
        self.t += 1
        return out

    def steps_per_sample(self) -> int | None:
        """For time-dependent encoders in single-step use: how many steps a sample spans."""
        return None

    def reset(self) -> None:
        self.t = 0
        self._seq = None


def check_intensity(x: Tensor, where: str) -> Tensor:
    """Input intensities for rate and latency codes must be floats in [0, 1]."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{where}: expected a floating-point tensor of intensities in [0, 1], got {got}")
    if x.numel():
        lo, hi = torch.aminmax(x.detach())  # one pass over the input, not two
        if bool(lo < 0) or bool(hi > 1) or bool(torch.isnan(lo)):
            raise ValueError(
                f"{where}: intensities must lie in [0, 1], got min {float(lo):.4g}, max {float(hi):.4g};"
                " scale the input first (e.g. pixels / 255)"
            )
    return x


def check_steps(T: int, where: str) -> int:
    if not isinstance(T, int) or isinstance(T, bool) or T < 1:
        raise ValueError(f"{where}: the number of time steps T must be an integer >= 1, got {T!r}")
    return T
