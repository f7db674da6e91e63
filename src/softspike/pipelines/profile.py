"""Cost profile of a spec-built network, block by block: what the partitioner needs to place stages.

For every top-level block i of `net.body` (the spec's `layers[i]`), at a micro-batch of B samples
and T time steps on one device:

    time_ms           forward + backward of the block alone (median of `repeats` runs)
    param_bytes       parameters and buffers; gradients take as much again (grad_bytes)
    optimizer_bytes   optimizer state: Adam keeps two moments, 2 x param_bytes
    activation_bytes  tensors autograd saves for backward during the forward pass, measured with
                      `torch.autograd.graph.saved_tensors_hooks`, each storage counted once
                      (parameters excluded) and charged to the block whose forward saved it first,
                      not counting the block's input tensor, which is input_saved_bytes: the
                      input's bytes if this block is the first to save it (0 otherwise). A stage
                      that starts at this block holds its received input anyway.
    output_bytes      the [T, B, ...] tensor the block hands to the next one (a stage boundary)

Spiking activations are kept for all T steps, so activation and boundary bytes grow linearly
with T (and with B); parameter bytes do not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from softspike.models.builder import build
from softspike.models.load import CheckedSpec
from softspike.models.network import SpikingNetwork
from softspike.pipelines.plan import PlanError

#: Bytes of optimizer state per parameter byte (Adam: exp_avg and exp_avg_sq).
ADAM_STATE_FACTOR = 2


@dataclass(frozen=True)
class BlockCost:
    """Measured costs of one top-level block for one micro-batch."""

    path: str
    kind: str
    time_ms: float
    forward_ms: float
    param_bytes: int
    activation_bytes: int
    input_saved_bytes: int
    output_bytes: int

    @property
    def grad_bytes(self) -> int:
        return self.param_bytes

    @property
    def optimizer_bytes(self) -> int:
        return ADAM_STATE_FACTOR * self.param_bytes

    @property
    def state_bytes(self) -> int:
        """Parameters + gradients + optimizer state: memory held whatever the schedule."""
        return self.param_bytes + self.grad_bytes + self.optimizer_bytes


@dataclass(frozen=True)
class Profile:
    """Per-block costs of a network at micro-batch size `batch_size`, `T` steps, on `device`."""

    spec_name: str
    batch_size: int
    T: int
    device: str
    blocks: list[BlockCost]
    input_bytes: int
    notes: list[str] = field(default_factory=list)

    def boundary_in(self, start: int) -> int:
        """Bytes a stage starting at block `start` receives (the raw batch for stage 0)."""
        return self.input_bytes if start == 0 else self.blocks[start - 1].output_bytes


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _state_bytes(module: nn.Module) -> int:
    return sum(_nbytes(p) for p in module.parameters()) + sum(_nbytes(b) for b in module.buffers())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


def _block_kind(spec: Any, i: int) -> str:
    layer = spec.layers[i]
    if layer.type == "neuron":
        return f"neuron:{layer.neuron.type}"
    return str(layer.type)


def _saved_activation_bytes(net: SpikingNetwork, seq: Tensor) -> tuple[list[int], list[int]]:
    """Per top-level block, in one forward pass (storages deduplicated, parameters excluded): the
    bytes it saves for backward other than its input, and its input's bytes if it saves it first."""
    blocks = list(net.body)
    current = [0, 0]  # block index, data_ptr of its input's storage
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in net.buffers()}
    seen: set[int] = set()
    saved = [0] * len(blocks)
    input_saved = [0] * len(blocks)

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in seen and key not in params and storage.nbytes() > 0:
            seen.add(key)
            counter = input_saved if key == current[1] else saved
            counter[current[0]] += storage.nbytes()
        return t

    x = seq
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        for i, block in enumerate(blocks):
            current[0], current[1] = i, x.untyped_storage().data_ptr()
            x = block(x)
    del x
    return saved, input_saved


def profile_network(
    net: SpikingNetwork,
    spec: Any,
    batch_size: int,
    T: int | None = None,
    device: str | torch.device = "cpu",
    repeats: int = 3,
    seed: int = 0,
) -> Profile:
    """Measure each top-level block of `net` (built from `spec`) at `batch_size` samples and T steps."""
    if batch_size < 1:
        raise PlanError(f"profile: batch_size must be >= 1, got {batch_size}")
    if repeats < 1:
        raise PlanError(f"profile: repeats must be >= 1, got {repeats}")
    T = T or net.T
    dev = torch.device(device)
    net = net.to(dev).train()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((batch_size, *net.input_shape), generator=gen).to(dev)
    with torch.no_grad():
        seq = net.encoder.encode(x, T)
    # What stage 0 holds per micro-batch as its input: the encoded sequence (a constant code may be
    # a broadcast view of the batch: count its storage, not its shape).
    input_bytes = seq.untyped_storage().nbytes()
    activations, inputs_saved = _saved_activation_bytes(net, seq)

    costs: list[BlockCost] = []
    inp = seq
    for i, block in enumerate(net.body):
        # The block alone, as a stage would run it: input from the previous stage, gradient sent back.
        src = inp.detach().requires_grad_(i > 0)
        fwd_times, total_times = [], []
        for run in range(repeats + 1):  # run 0 warms up (allocations, kernel choice)
            holder: list[Tensor] = []
            fwd = _timed(lambda: holder.append(block(src)), dev)  # noqa: B023 (called at once)
            out = holder[0]
            bwd = 0.0
            if out.requires_grad:  # a first parameter-free block (flatten, pooling) has no backward
                grad = torch.ones_like(out)
                bwd = _timed(lambda: out.backward(grad), dev)  # noqa: B023
            if run:
                fwd_times.append(fwd)
                total_times.append(fwd + bwd)
        net.zero_grad(set_to_none=True)
        costs.append(BlockCost(
            path=f"layers[{i}]",
            kind=_block_kind(spec, i),
            time_ms=statistics.median(total_times),
            forward_ms=statistics.median(fwd_times),
            param_bytes=_state_bytes(block),
            activation_bytes=activations[i],
            input_saved_bytes=inputs_saved[i],
            output_bytes=_nbytes(out),
        ))
        inp = out.detach()
    return Profile(spec.name, batch_size, T, str(dev), costs, input_bytes)


def resolve_device(device: str) -> tuple[str, list[str]]:
    """The device to profile on: CUDA devices fall back to CPU (with a note) where CUDA is missing."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "cpu", [f"CUDA is not available here: profiled on the CPU, not on {device}; "
                       "times are CPU times (memory and sizes carry over)"]
    return str(dev), []


def profile_spec(
    checked: CheckedSpec,
    batch_size: int,
    T: int | None = None,
    device: str = "cpu",
    repeats: int = 3,
    seed: int = 0,
) -> Profile:
    """Build the checked spec (seeded) and profile it; see `profile_network`."""
    where, notes = resolve_device(device)
    torch.manual_seed(seed)
    net = build(checked)
    prof = profile_network(net, checked.spec, batch_size, T or checked.spec.T, where, repeats, seed)
    return Profile(prof.spec_name, prof.batch_size, prof.T, prof.device, prof.blocks, prof.input_bytes,
                   [*prof.notes, *notes])
