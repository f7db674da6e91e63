"""Memory a spec-built network needs, by arithmetic, and the limit it is refused at before anything
is allocated.

    parameters:  4 bytes per parameter for the weight, its gradient and Adam's two moments
                 = 16 bytes per parameter
    activations: 4 bytes per element every layer keeps for backward, per sample and time step
                 (`LayerSpec.activation_size`), and the encoder's output, times T · batch size

An estimate (float32, training with Adam), good to the factor that separates "fits" from "cannot
fit": its job is to turn a 10^9-output linear layer or T = 10^7 into a clear error instead of a
failure deep in torch's allocator (or the machine swapping to death).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from softspike.models.errors import SpecError
from softspike.models.layers import numel
from softspike.models.load import CheckedSpec

BYTES_PER_VALUE = 4  # float32
#: Weight, gradient and Adam's two moments.
BYTES_PER_PARAMETER = 4 * BYTES_PER_VALUE
#: Used when the machine's memory cannot be read.
FALLBACK_LIMIT = 16 * 2**30

_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "kb": 10**3, "m": 2**20, "mib": 2**20, "mb": 10**6,
          "g": 2**30, "gib": 2**30, "gb": 10**9, "t": 2**40, "tib": 2**40, "tb": 10**12}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([a-z]*)\s*$", re.I)


def parse_size(text: str) -> int:
    """'8GiB', '512M', '1.5GB', '1e9' -> bytes. KiB/MiB/GiB/TiB and K/M/G/T are powers of 1024,
    KB/MB/GB/TB powers of 1000, a bare number is bytes. ValueError on anything else."""
    match = _SIZE_RE.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"not a memory size: {text!r} (examples: 8GiB, 512MiB, 2GB, 1e9)")
    value = float(match.group(1)) * _UNITS[unit]
    if not 1 <= value < 2**63:
        raise ValueError(f"memory size out of range: {text!r} (from 1 byte to 8 EiB)")
    return int(value)


def format_size(n: int) -> str:
    """Bytes for people: 1536 -> '1.5 KiB'; sizes far past any machine stay readable ('3.1e+05 TiB')."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            if value < 1000:
                return f"{value:.3g} {unit}"
            return f"{value:.0f} {unit}" if value < 1e5 else f"{value:.2g} {unit}"  # 1023.9 GiB, not 1.02e+03
    return f"{n} B"


def machine_memory(device: str = "cpu") -> int:
    """Total memory of the device (a CUDA device's own, else the machine's RAM), in bytes."""
    if device.startswith("cuda"):
        import torch

        try:
            if torch.cuda.is_available():
                index = torch.device(device).index
                return int(torch.cuda.get_device_properties(index if index is not None else 0).total_memory)
        except (RuntimeError, ValueError, AssertionError):  # a malformed or absent device: the trainer says so
            pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return FALLBACK_LIMIT


@dataclass(frozen=True)
class LayerMemory:
    """What one part of the network needs: its path, parameter bytes and activation bytes."""

    path: str
    what: str
    parameter_bytes: int
    activation_bytes: int

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.activation_bytes


@dataclass(frozen=True)
class MemoryEstimate:
    """The memory a training step needs at `batch_size`, part by part (encoder first)."""

    batch_size: int
    T: int
    parts: list[LayerMemory]

    @property
    def parameter_bytes(self) -> int:
        return sum(p.parameter_bytes for p in self.parts)

    @property
    def activation_bytes(self) -> int:
        return sum(p.activation_bytes for p in self.parts)

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.activation_bytes

    def largest(self) -> LayerMemory:
        return max(self.parts, key=lambda p: p.total)

    def for_batch(self, batch_size: int) -> MemoryEstimate:
        """This estimate, made for a batch of one, at `batch_size`."""
        parts = [replace(p, activation_bytes=p.activation_bytes * batch_size) for p in self.parts]
        return MemoryEstimate(batch_size * self.batch_size, self.T, parts)

    @property
    def inference_bytes(self) -> int:
        """Without gradients: the weights alone, and at most two parts' activations alive at once
        (a layer's input and output; nothing is kept for backward)."""
        return self.parameter_bytes // 4 + 2 * max(p.activation_bytes for p in self.parts)


def estimate(checked: CheckedSpec, batch_size: int) -> MemoryEstimate:
    """Memory of one training step of `checked` at `batch_size`, from the shape pass's sizes."""
    spec = checked.spec
    per_step = spec.T * batch_size * BYTES_PER_VALUE
    parts = [LayerMemory("encoder", f"{spec.encoder.type} encoder", checked.encoder_params * BYTES_PER_PARAMETER,
                         numel(checked.step_shape) * per_step)]
    for info in checked.layers:
        parts.append(LayerMemory(info.path, f"{info.layer.type} layer", info.params * BYTES_PER_PARAMETER,
                                 info.activations * per_step))
    return MemoryEstimate(batch_size, spec.T, parts)


def _detail(part: LayerMemory, est: MemoryEstimate) -> str:
    pieces = []
    if part.parameter_bytes:
        pieces.append(f"{part.parameter_bytes // BYTES_PER_PARAMETER:,} parameters with gradients and Adam "
                      f"state: {format_size(part.parameter_bytes)}")
    if part.activation_bytes:
        pieces.append(f"activations for batch size {est.batch_size} and T={est.T}: "
                      f"{format_size(part.activation_bytes)}")
    return "; ".join(pieces)


#: How a command-line user raises the memory limit.
CLI_LIMIT = "--max-memory SIZE"


def over_limit(est: MemoryEstimate, limit: int, how: str = CLI_LIMIT) -> str | None:
    """The `path: ...` line saying which part (or the whole network) of a training step exceeds
    `limit` bytes, or None if it fits; `how` tells how to raise the limit."""
    if est.total <= limit:
        return None
    hint = f"; use smaller layers, a smaller batch size or T, or raise the limit with {how}"
    big = est.largest()
    if big.total > limit:
        return (f"{big.path}: the {big.what} alone needs {format_size(big.total)} ({_detail(big, est)}), "
                f"over the memory limit of {format_size(limit)}{hint}")
    return (f"layers: the network needs {format_size(est.total)} for batch size {est.batch_size} and T={est.T} "
            f"(parameters with gradients and Adam state {format_size(est.parameter_bytes)}, activations "
            f"{format_size(est.activation_bytes)}; the largest part is {big.path}, "
            f"{format_size(big.total)}), over the memory limit of {format_size(limit)}{hint}")


def check_memory(checked: CheckedSpec, batch_size: int, limit: int, how: str = CLI_LIMIT) -> MemoryEstimate:
    """The estimate, or SpecError naming the layer (or the whole network) that exceeds `limit` bytes."""
    est = estimate(checked, batch_size)
    line = over_limit(est, limit, how)
    if line is not None:
        raise SpecError(checked.source, [line])
    return est


def check_batch(per_sample: MemoryEstimate, batch_size: int, training: bool, limit: int,
                how: str) -> str | None:
    """Whether a call on `batch_size` samples fits `limit` bytes: None, or the reason it does not
    (a training step with gradients as `over_limit`; inference by `inference_bytes`)."""
    est = per_sample.for_batch(batch_size)
    if training:
        return over_limit(est, limit, how)
    if est.inference_bytes <= limit:
        return None
    big = max(est.parts, key=lambda p: p.activation_bytes)
    return (f"{big.path}: inference on a batch of {batch_size} at T={est.T} needs about "
            f"{format_size(est.inference_bytes)} (the {big.what}'s activations alone "
            f"{format_size(big.activation_bytes)}), over the memory limit of {format_size(limit)}; use a "
            f"smaller batch, a spec with a smaller T or layers, or raise the limit with {how}")


def check_weights(checked: CheckedSpec, limit: int | None = None) -> None:
    """SpecError if the network's weights alone (4 bytes each) exceed `limit` (default: the machine's
    memory): the guard every build passes, whatever path the spec came by (a file, a checkpoint)."""
    limit = machine_memory() if limit is None else limit
    weights = checked.num_parameters * BYTES_PER_VALUE
    if weights <= limit:
        return
    big = max(checked.layers, key=lambda info: info.params)
    raise SpecError(checked.source, [
        f"{big.path}: the network's {checked.num_parameters:,} parameters would take {format_size(weights)} "
        f"({big.layer.type} layer {big.path}: {big.params:,}), more than the {format_size(limit)} of memory here"
    ])
