"""Encoders turn analog input into spike trains.

`encode(x, T)` returns [T, *x.shape] from a fresh start (multi-step, what spec networks use);
calling the encoder, `enc(x)`, gives one time step per call, as in the 2020 API, with any state
(a step counter, the previous input) kept until `reset()`. A time-dependent encoder called on
an input other than the one it is stepping through starts that new input at step 0.
"""

from __future__ import annotations

import abc
import weakref

import torch
from torch import Tensor, nn


class Encoder(nn.Module, metaclass=abc.ABCMeta):
    """Base of every encoder. Subclasses define `encode(x, T)`; stateless ones are done."""

    def __init__(self) -> None:
        super().__init__()
        self.t = 0
        self._seq: Tensor | None = None
        self._input: Tensor | None = None  # what _seq encodes (a copy: the caller may reuse its tensor)
        self._given: tuple[weakref.ref[Tensor], int] | None = None  # the caller's tensor and its version then

    @abc.abstractmethod
    def encode(self, x: Tensor, T: int) -> Tensor:
        """Spike train [T, *x.shape] for input `x`."""

    def forward(self, x: Tensor) -> Tensor:
        """One time step. Encoders whose output depends on time override `steps_per_sample`."""
        T = self.steps_per_sample()
        if T is None:
            return self.encode(x, 1)[0]
        if self._seq is None or self.t >= T or not self._encodes(x):
            # A new sample (or batch) starts over, whatever its shape: never replay another input.
            self._seq, self._input, self.t = self.encode(x, T), x.detach().clone(), 0
        self._given = _version_of(x)
        out = self._seq[self.t]
        self.t += 1
        return out

    def _encodes(self, x: Tensor) -> bool:
        """Whether the kept sequence was encoded from these very values. The same tensor as at the
        last call, not written to since (its version counter), needs no look at its values: a
        single-step loop passing one input T times reads nothing on the host (a GPU sync per step).
        Any other tensor is compared by value."""
        kept = self._input
        if kept is None or kept.shape != x.shape or kept.dtype != x.dtype or kept.device != x.device:
            return False
        given, now = self._given, _version_of(x)
        if given is not None and now is not None and given[0]() is x and given[1] == now[1]:
            return True
        return torch.equal(kept, x.detach())

    def steps_per_sample(self) -> int | None:
        """For time-dependent encoders in single-step use: how many steps a sample spans."""
        return None

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_given"] = None  # a weak reference does not pickle; the value comparison stands in
        return state

    def reset(self) -> None:
        self.t = 0
        self._seq = None
        self._input = None
        self._given = None


def _version_of(x: Tensor) -> tuple[weakref.ref[Tensor], int] | None:
    """A weak reference to `x` and its version counter (None for tensors without one: inference mode)."""
    try:
        return weakref.ref(x), x._version
    except (RuntimeError, TypeError):
        return None


def check_intensity(x: Tensor, where: str) -> Tensor:
    """Input intensities for rate and latency codes must be floats in [0, 1] (checked on the host for
    CPU tensors, with a message; on the device, without a host synchronisation, for any other)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{where}: expected a floating-point tensor of intensities in [0, 1], got {got}")
    if x.numel():
        lo, hi = torch.aminmax(x.detach())  # one pass over the input, not two
        if x.device.type != "cpu" or torch.compiler.is_compiling():
            # Reading lo and hi on the host would stall a GPU at every call, and a traced graph cannot
            # branch on values: the check runs on the device (NaN fails it too). On a GPU a bad input
            # fails as a device-side assertion, without this message: check data on the CPU for that.
            torch._assert_async((lo >= 0) & (hi <= 1), f"{where}: intensities must lie in [0, 1]")
            return x
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
