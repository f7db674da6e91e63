"""Built-in encoders: Poisson (rate), Constant (direct input), Latency (time to first spike), Delta,
Frames (data that carries its own time axis, e.g. event-camera frames)."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from softspike.core.encoder import Encoder, check_intensity, check_steps
from softspike.core.params import FLOAT32_TINY, Params, validate_params


class PoissonParams(Params):
    """Poisson encoding has no parameters."""


class PoissonEncoder(Encoder):
    """Rate code: at each step, a spike with probability equal to the intensity x in [0, 1]."""

    Params: ClassVar[type[PoissonParams]] = PoissonParams

    def encode(self, x: Tensor, T: int) -> Tensor:
        check_intensity(x, "PoissonEncoder")
        check_steps(T, "PoissonEncoder")
        from softspike.kernels.sampling import bernoulli_steps  # one stream, compiled kernel or not

        return bernoulli_steps(x, T)


class ConstantParams(Params):
    """Constant encoding has no parameters."""


class ConstantEncoder(Encoder):
    """Direct input: the analog value itself at every step (the first layer then acts as encoder)."""

    Params: ClassVar[type[ConstantParams]] = ConstantParams
    analog: ClassVar[bool] = True

    def encode(self, x: Tensor, T: int) -> Tensor:
        check_steps(T, "ConstantEncoder")
        if not isinstance(x, Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"ConstantEncoder: expected a floating-point tensor, got {got}")
        return x.unsqueeze(0).expand(T, *x.shape)

    def forward(self, x: Tensor) -> Tensor:
        return self.encode(x, 1)[0]


class LatencyParams(Params):
    T: int | None = Field(None, ge=1)
    """Steps per sample for single-step use (multi-step `encode(x, T)` takes T from the call)."""


class LatencyEncoder(Encoder):
    """Time to first spike: intensity x in (0, 1] fires once, at step round((1 - x)·(T - 1)).

    Larger inputs fire earlier; x = 0 never fires.
    """

    Params: ClassVar[type[LatencyParams]] = LatencyParams

    def __init__(self, T: int | None = None) -> None:
        super().__init__()
        self.T = validate_params(LatencyParams, "LatencyEncoder", {"T": T}).T

    def encode(self, x: Tensor, T: int) -> Tensor:
        check_intensity(x, "LatencyEncoder")
        check_steps(T, "LatencyEncoder")
        t_fire = torch.round((1.0 - x) * (T - 1))
        steps = torch.arange(T, device=x.device, dtype=x.dtype).view(T, *([1] * x.dim()))
        return ((steps == t_fire) & (x > 0)).to(x.dtype)

    def steps_per_sample(self) -> int | None:
        if self.T is None:
            raise ValueError("LatencyEncoder: single-step use needs T, e.g. LatencyEncoder(T=8)")
        return self.T


class DeltaParams(Params):
    threshold: float = Field(0.1, ge=FLOAT32_TINY)
    """A spike marks a change larger than this since the last spike-free reference (at least 1.2e-38,
    float32's smallest normal number: a smaller one rounds to 0, and any change at all would fire)."""
    off_spikes: bool = False
    """Also fire on decreases (|change| > threshold) instead of increases only."""


class DeltaEncoder(Encoder):
    """Change-driven code: spike where x(t) - x(t-1) > threshold (or |·| with off_spikes).

    `encode(x, T)` of a static input sees a change from zero at t = 0 only; `encode_sequence`
    takes a [T, ...] signal, and calling the encoder step by step compares with the last input.
    """

    Params: ClassVar[type[DeltaParams]] = DeltaParams

    def __init__(self, threshold: float = 0.1, off_spikes: bool = False) -> None:
        super().__init__()
        p = validate_params(DeltaParams, "DeltaEncoder", {"threshold": threshold, "off_spikes": off_spikes})
        self.threshold, self.off_spikes = p.threshold, p.off_spikes
        self.previous: Tensor | None = None

    def _fire(self, change: Tensor) -> Tensor:
        change = change.abs() if self.off_spikes else change
        return (change > self.threshold).to(change.dtype)

    def encode_sequence(self, x_seq: Tensor) -> Tensor:
        if not isinstance(x_seq, Tensor) or not x_seq.is_floating_point() or x_seq.dim() < 1:
            raise TypeError("DeltaEncoder.encode_sequence: expected a floating-point tensor [T, ...]")
        prev = torch.cat([torch.zeros_like(x_seq[:1]), x_seq[:-1]])
        return self._fire(x_seq - prev)

    def encode(self, x: Tensor, T: int) -> Tensor:
        check_steps(T, "DeltaEncoder")
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError("DeltaEncoder: expected a floating-point tensor")
        return self.encode_sequence(x.unsqueeze(0).expand(T, *x.shape))

    def forward(self, x: Tensor) -> Tensor:
        prev = torch.zeros_like(x) if self.previous is None or self.previous.shape != x.shape else self.previous
        self.previous = x.detach()
        return self._fire(x - prev)

    def reset(self) -> None:
        super().reset()
        self.previous = None


class FramesParams(Params):
    """The frames encoder has no parameters: the data's own time steps are the network's."""


class FramesEncoder(Encoder):
    """Input that is already a sequence, x [B, T, ...] (event-camera frames, binned audio spikes):
    `encode(x, T)` moves its time axis first, giving [T, B, ...] unchanged in value (counts stay counts).

    `time_axis = True` tells the spec language that a sample's shape starts with T:
    input_shape [T, C, H, W] or [T, features], with its first entry equal to the spec's T.
    Called step by step, each call's input already is one time step and passes through.
    """

    Params: ClassVar[type[FramesParams]] = FramesParams
    analog: ClassVar[bool] = True  # frames hold event counts, not only 0/1
    time_axis: ClassVar[bool] = True

    def encode(self, x: Tensor, T: int) -> Tensor:
        check_steps(T, "FramesEncoder")
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 2:
            got = f"{x.dtype} of shape {list(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"FramesEncoder: expected a floating-point batch [B, T, ...], got {got}")
        if x.shape[1] != T:
            raise ValueError(f"FramesEncoder: the input has {x.shape[1]} time steps (dim 1) but T is {T}; "
                             "frame the data with T bins")
        return x.transpose(0, 1).contiguous()

    def forward(self, x: Tensor) -> Tensor:
        return x
