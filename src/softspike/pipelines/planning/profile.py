"""Cost profile of a spec-built network, block by block: what the partitioner needs to place stages.

For every top-level block i of `net.body` (the spec's `layers[i]`), at a micro-batch of B samples
and T time steps on one device:

    time_ms           forward + backward of the block alone: the fastest of `repeats` runs, after a
                      warm-up pass of the whole network (other load only ever adds time, so the
                      minimum is the steadiest estimate on a shared machine)
    param_bytes       parameters; gradients take as much again, Adam's two moments twice as much
    buffer_bytes      buffers (batch-norm running statistics); state_bytes is the sum of all four
    activation_bytes  tensors autograd saves for backward during the forward pass, counted by the one
                      rule of `pipelines.costs` (`SavedBytes`: each storage once, parameters and
                      buffers excluded) and charged to the block whose forward saved it first, not
                      counting the block's input tensor, which is input_saved_bytes: the input's
                      bytes if this block is the first to save it (0 otherwise). A stage that
                      starts at this block holds its received input anyway.
    output_bytes      the [T, B, ...] tensor the block hands to the next one (a stage boundary)

Spiking activations are kept for all T steps, so activation and boundary bytes grow linearly
with T (and with B); parameter bytes do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from softspike.models.builder import build
from softspike.models.load import CheckedSpec
from softspike.models.network import SpikingNetwork
from softspike.pipelines.costs import ADAM_STATE_FACTOR, Clock, SavedBytes, nbytes, storage_bytes, timed
from softspike.pipelines.planning.document import PlanError


@dataclass(frozen=True)
class BlockCost:
    """Measured costs of one top-level block for one micro-batch."""

    path: str
    kind: str
    time_ms: float
    forward_ms: float
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int
    input_saved_bytes: int
    output_bytes: int

    @property
    def state_bytes(self) -> int:
        """Parameters, their gradients, Adam's two moments and the buffers: held whatever the schedule."""
        return (2 + ADAM_STATE_FACTOR) * self.param_bytes + self.buffer_bytes


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


def _block_kind(spec: Any, i: int) -> str:
    layer = spec.layers[i]
    if layer.type == "neuron":
        return f"neuron:{layer.neuron.type}"
    return str(layer.type)


def _saved_activation_bytes(net: SpikingNetwork, seq: Tensor) -> tuple[list[int], list[int]]:
    """Per top-level block, in one forward pass (the `costs.SavedBytes` rule): the bytes it saves for
    backward other than its input, and its input's bytes if it saves it first."""
    blocks = list(net.body)
    counter = SavedBytes([net])
    x = seq
    with counter.counting():
        for i, block in enumerate(blocks):
            counter.owner, counter.input_key = i, x.untyped_storage().data_ptr()
            x = block(x)
    del x
    return ([counter.by_owner.get(i, 0) for i in range(len(blocks))],
            [counter.inputs.get(i, 0) for i in range(len(blocks))])


def _chained_step(
    blocks: list[nn.Module], seq: Tensor, dev: torch.device, clock: Clock
) -> tuple[list[float], list[float]]:
    """One forward and backward of the whole body, each block timed on its own: its input arrives
    detached (as from another stage) and its input's gradient is handed back. All blocks' graphs
    are alive together, as in a real step: timing blocks one by one in isolation, with a warm cache
    and no memory pressure, came out 30% below the chained time of a 20-block stage here."""
    srcs: list[Tensor] = []
    outs: list[Tensor] = []
    fwd: list[float] = []
    x = seq
    for i, block in enumerate(blocks):
        src = x.detach().requires_grad_(i > 0)
        holder: list[Tensor] = []
        fwd.append(timed(lambda: holder.append(block(src)), dev, clock))  # noqa: B023 (called at once)
        srcs.append(src)
        outs.append(holder[0])
        x = holder[0]
    bwd = [0.0] * len(blocks)
    for i in range(len(blocks) - 1, -1, -1):
        out = outs[i]
        if not out.requires_grad:  # a first parameter-free block (flatten, pooling) has no backward
            continue
        nxt = srcs[i + 1].grad if i + 1 < len(blocks) else None
        grad = nxt if nxt is not None else torch.ones_like(out)
        bwd[i] = timed(lambda: out.backward(grad), dev, clock)  # noqa: B023
    return fwd, bwd


def profile_network(
    net: SpikingNetwork,
    spec: Any,
    batch_size: int,
    T: int | None = None,
    device: str | torch.device = "cpu",
    repeats: int = 3,
    seed: int = 0,
    clock: Clock = "wall",
) -> Profile:
    """Measure each top-level block of `net` (built from `spec`) at `batch_size` samples and T steps,
    on random input in [0, 1). It runs `repeats` + 1 training steps' forward and backward passes on
    `net` itself, in training mode (batch-norm statistics move; gradients are cleared after): pass
    a copy to keep a trained network as it is."""
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
    input_bytes = storage_bytes(seq)
    activations, inputs_saved = _saved_activation_bytes(net, seq)
    blocks = list(net.body)
    fwd_runs: list[list[float]] = [[] for _ in blocks]
    total_runs: list[list[float]] = [[] for _ in blocks]
    outs: list[Tensor] = []
    for run in range(repeats + 1):  # run 0 warms up: kernels chosen, allocator pools filled
        fwd, bwd = _chained_step(blocks, seq, dev, clock)
        if run:
            for i in range(len(blocks)):
                fwd_runs[i].append(fwd[i])
                total_runs[i].append(fwd[i] + bwd[i])
        net.zero_grad(set_to_none=True)
    with torch.no_grad():
        x = seq
        for block in blocks:
            x = block(x)
            outs.append(x)
    costs = [
        BlockCost(
            path=f"layers[{i}]", kind=_block_kind(spec, i), time_ms=min(total_runs[i]), forward_ms=min(fwd_runs[i]),
            param_bytes=nbytes(block.parameters()), buffer_bytes=nbytes(block.buffers()),
            activation_bytes=activations[i], input_saved_bytes=inputs_saved[i], output_bytes=nbytes(outs[i]),
        )
        for i, block in enumerate(blocks)
    ]
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
    clock: Clock = "wall",
) -> Profile:
    """Build the checked spec (seeded) and profile it; see `profile_network`."""
    where, notes = resolve_device(device)
    torch.manual_seed(seed)
    net = build(checked)
    if clock == "thread" and (where != "cpu" or torch.get_num_threads() != 1):
        raise PlanError("profile: the thread clock measures one-threaded CPU work only; "
                        "call torch.set_num_threads(1) and profile on the CPU, or use the wall clock")
    prof = profile_network(net, checked.spec, batch_size, T or checked.spec.T, where, repeats, seed, clock)
    return Profile(prof.spec_name, prof.batch_size, prof.T, prof.device, prof.blocks, prof.input_bytes,
                   [*prof.notes, *notes])
