"""The module a spec builds: encoder, multi-step layers, and the readout that the loss sees."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from softspike.core.encoder import Encoder
from softspike.core.errors import SoftspikeError
from softspike.core.neuron import Neuron

if TYPE_CHECKING:
    from softspike.models.limits import MemoryEstimate

#: How a Python user raises the limit a network checks its batches against.
PYTHON_LIMIT = "build(checked, max_memory=BYTES) or net.max_memory = BYTES"


class InputError(SoftspikeError, ValueError):
    """A tensor that does not fit the network (wrong type, dtype or shape)."""


class Residual(nn.Module):
    """y = x + body(x) over [T, B, ...]."""

    def __init__(self, body: nn.Sequential) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SpikingNetwork(nn.Module):
    """A spec-built network: `net(x)` takes a batch [B, *input_shape] and returns the readout
    [B, classes] (firing rates over T steps times the readout's scale); `net.spikes(x)` returns the
    output spikes [T, B, classes]. Every call starts from rest (multi-step mode).

    A floating-point input of another dtype than the network's parameters (float64 from numpy,
    bfloat16, float16) is cast to the parameters' dtype, as Keras layers cast to their compute
    dtype: float32 unless the network was converted (`net.double()`), and the output has that dtype.
    A batch whose activations would not fit the memory limit (`max_memory` bytes, default the
    device's memory; estimated as `softspike validate` does, for training when gradients are
    enabled, for inference under `torch.no_grad()`) is refused with an InputError before any
    tensor is allocated."""

    def __init__(
        self,
        name: str,
        input_shape: Sequence[int],
        T: int,
        encoder: Encoder,
        body: nn.Sequential,
        layer_paths: Sequence[tuple[str, nn.Module]],
        readout_scale: float = 1.0,
        memory: MemoryEstimate | None = None,
        max_memory: int | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.input_shape = tuple(input_shape)
        self.T = T
        self.encoder = encoder
        self.body = body
        self.readout_scale = readout_scale
        # A plain list, so the modules are not registered twice; the paths are the spec's JSON paths.
        self.layer_paths: list[tuple[str, nn.Module]] = list(layer_paths)
        #: The memory one sample needs (`softspike.models.limits.estimate` at batch size 1), if known.
        self.memory = memory
        #: The limit each call's batch is checked against; None: the memory of the input's device.
        self.max_memory = max_memory

    def _param_dtype(self) -> torch.dtype | None:
        for t in self.parameters():
            if t.is_floating_point():
                return t.dtype
        return next((t.dtype for t in self.buffers() if t.is_floating_point()), None)

    def _check_memory(self, x: Tensor) -> None:
        if self.memory is None or torch.compiler.is_compiling():
            return
        from softspike.models.limits import check_batch, machine_memory

        limit = self.max_memory if self.max_memory is not None else machine_memory(str(x.device))
        why = check_batch(self.memory, int(x.shape[0]), torch.is_grad_enabled(), limit, PYTHON_LIMIT)
        if why is not None:
            raise InputError(f"network {self.name!r}: {why}")

    def check_input(self, x: object) -> Tensor:
        where = f"network {self.name!r}"
        if not isinstance(x, Tensor):
            raise InputError(f"{where}: expected a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise InputError(
                f"{where}: expected a floating-point tensor, got {x.dtype}; scale images with x.float() / 255"
            )
        if tuple(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"{where}: expected a batch of shape [B, {', '.join(map(str, self.input_shape))}] "
                f"(the spec's input_shape), got {list(x.shape)}"
            )
        self._check_memory(x)
        dtype = self._param_dtype()
        return x if dtype is None or x.dtype == dtype else x.to(dtype)

    def spikes(self, x: Tensor) -> Tensor:
        """Output spikes [T, B, classes] for a batch x [B, *input_shape]."""
        x = self.check_input(x)
        try:
            seq = self.encoder.encode(x, self.T)
        except (TypeError, ValueError) as err:
            raise InputError(f"network {self.name!r}, encoder: {err}") from None
        return self.body(seq)  # type: ignore[no-any-return]

    def forward(self, x: Tensor) -> Tensor:
        return self.spikes(x).mean(0) * self.readout_scale

    def neuron_layers(self) -> list[tuple[str, Neuron]]:
        """The neuron layers and their spec paths (e.g. for firing-rate monitors)."""
        return [(path, m) for path, m in self.layer_paths if isinstance(m, Neuron)]
