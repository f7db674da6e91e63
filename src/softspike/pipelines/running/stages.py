"""One process's part of a pipelined (and data-parallel) spec-built network on torch.distributed.pipelining.

A spec-built network is `encoder -> body -> rate readout`, and `body` is an `nn.Sequential` of top-level
blocks acting on [T, B, ...]. Stage s holds the contiguous blocks `body[start:stop]`; stage 0 also runs
the encoder (on the whole batch, before the schedule splits it, so a Poisson encoder draws exactly as one
process would), the last stage the readout and the loss. Stages are built by hand from the blocks: the
`pipeline()` tracer would inline the spike op's `autograd.Function` and lose the surrogate gradient.

Micro-batches are cut along the batch dimension of [T, B, ...] (`TensorChunkSpec(1)`), never along time.
Multi-step neurons start from rest at every call, so micro-batches never share a membrane. With
micro-batch losses `L_m = sum_{i in m} l_i / B` (B the local batch) and `scale_grads=False`,

    sum_m dL_m/dθ = d/dθ (1/B) sum_i l_i,

the gradient of the whole batch's mean loss, for any micro-batch count. The stages' shapes are given to
`PipelineStage` (`input_args`/`output_args`, from the spec's shape pass), so no probe forward runs:
neither batch-norm statistics nor firing-rate monitors see a batch that was not trained on.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from softspike.core.errors import SoftspikeError
from softspike.core.neuron import Neuron
from softspike.models.load import CheckedSpec
from softspike.models.network import SpikingNetwork
from softspike.pipelines.costs import Schedule
from softspike.train.recipe import batch_loss, rate_loss


class LayoutError(SoftspikeError):
    """A pipeline or data-parallel run that cannot start as asked (layout, world size, batch size)."""


@dataclass(frozen=True)
class Layout:
    """Where a network's blocks run: contiguous stages of top-level blocks, each on `data_parallel` replicas.

    Process `rank` holds stage `rank // data_parallel`, replica `rank % data_parallel` (a 2-D mesh of
    shape [stages, data_parallel], dims named "pp" and "dp")."""

    stages: tuple[tuple[int, int], ...]
    schedule: Schedule = "1f1b"
    microbatches: int = 1
    data_parallel: int = 1
    recompute: tuple[bool, ...] = ()
    """Per stage: recompute activations in backward (torch.utils.checkpoint) instead of keeping them."""

    @property
    def world_size(self) -> int:
        return len(self.stages) * self.data_parallel

    def check(self, n_blocks: int, world_size: int, batch_size: int | None = None) -> None:
        """Refuse a layout that cannot run, before any process group exists."""
        where = "pipeline layout"
        if not self.stages:
            raise LayoutError(f"{where}: no stages")
        expect = 0
        for i, (start, stop) in enumerate(self.stages):
            if start != expect or stop <= start:
                raise LayoutError(
                    f"{where}: stage {i} covers blocks [{start}, {stop}) but must start at block {expect} and hold "
                    "at least one block; stages are contiguous and in order"
                )
            expect = stop
        if expect != n_blocks:
            raise LayoutError(f"{where}: the stages cover {expect} blocks, but the spec has {n_blocks} top-level "
                                "blocks; plan again for this spec")
        if self.schedule == "interleaved_1f1b":
            raise LayoutError(
                f"{where}: schedule interleaved_1f1b needs several stages per process, but a plan places one "
                "stage per process; use gpipe or 1f1b"
            )
        if self.microbatches < 1 or self.data_parallel < 1:
            raise LayoutError(f"{where}: microbatches and data_parallel must be >= 1")
        if world_size != self.world_size:
            raise LayoutError(
                f"{where}: {len(self.stages)} stages x {self.data_parallel} replicas need {self.world_size} "
                f"processes, but this job has {world_size}; start it with torchrun --nproc-per-node "
                f"{self.world_size} (or --nnodes/--nproc-per-node whose product is {self.world_size})"
            )
        if batch_size is None:
            return
        per_replica, rest = divmod(batch_size, self.data_parallel)
        if rest or per_replica % self.microbatches:
            raise LayoutError(
                f"--batch-size {batch_size} must split evenly into {self.data_parallel} replicas x "
                f"{self.microbatches} micro-batches (a multiple of {self.data_parallel * self.microbatches}): "
                "a pipeline's micro-batches all have one shape"
            )

    def place(self, rank: int) -> tuple[int, int]:
        """(stage, replica) of a global rank."""
        return rank // self.data_parallel, rank % self.data_parallel


class StageBlocks(nn.Module):
    """Top-level blocks `body[start:stop]` of a spec-built network, in order, on [T, B, ...].

    Children keep their index in the body, so `state_dict()` keys prefixed with "body." are the whole
    network's keys: stage checkpoints merge back into one network's state."""

    def __init__(self, body: nn.Sequential, start: int, stop: int, recompute: bool = False) -> None:
        super().__init__()
        self.start, self.stop, self.recompute = start, stop, recompute
        for i in range(start, stop):
            self.add_module(str(i), body[i])

    def forward(self, x: Tensor) -> Tensor:
        for block in self.children():
            if self.recompute and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False, context_fn=functools.partial(_contexts, block))
            else:
                x = block(x)
        return x.contiguous()  # a stage boundary is sent as is: torch's p2p sends refuse other layouts


def _contexts(block: nn.Module) -> tuple[Any, Any]:
    return contextlib.nullcontext(), _quiet_recompute(block)


@contextlib.contextmanager
def _quiet_recompute(block: nn.Module) -> Iterator[None]:
    """The forward that recomputation repeats in backward must leave no trace: batch-norm running
    statistics are put back afterwards, and neuron layers look like eval mode to monitors' hooks (a
    neuron's forward does not depend on the flag). The random state is restored by checkpoint itself."""
    saved = [(b, b.detach().clone()) for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for b in m.buffers()]
    neurons = [m for m in block.modules() if isinstance(m, Neuron) and m.training]
    for m in neurons:
        m.training = False
    try:
        yield
    finally:
        for m in neurons:
            m.training = True
        with torch.no_grad():
            for b, value in saved:
                b.copy_(value)


def block_shapes(checked: CheckedSpec) -> list[tuple[int, ...]]:
    """The per-sample shape entering each top-level block, then the output shape (len = blocks + 1)."""
    top = [info for info in checked.layers if info.path.rsplit("[", 1)[0] == "layers"]
    return [tuple(info.in_shape) for info in top] + [tuple(checked.output_shape)]


@dataclass
class StepResult:
    """What the rank holding the loss learns from one step: the summed loss of its samples, and hits."""

    loss_sum: Tensor
    correct: Tensor
    count: int


class PipelineRuntime:
    """This process's stage of a pipeline, its schedule, and its replica group's gradient average."""

    def __init__(self, net: SpikingNetwork, checked: CheckedSpec, layout: Layout, rank: int, device: torch.device,
                 loss: str, pp_group: Any, dp_group: Any, local_batch: int) -> None:
        from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
        from torch.distributed.pipelining.microbatch import TensorChunkSpec

        if any(True for _ in net.encoder.parameters()):
            raise LayoutError(
                f"network {net.name!r}: its encoder has trainable parameters; a pipeline runs the encoder on the "
                "whole batch before splitting it, outside the stages, so it would not learn. Train it in one "
                "process or with --ddp"
            )
        self.layout, self.device, self.loss_kind = layout, device, loss
        self.stage_index, self.replica = layout.place(rank)
        start, stop = layout.stages[self.stage_index]
        recompute = bool(layout.recompute and layout.recompute[self.stage_index])
        self.module = StageBlocks(net.body, start, stop, recompute).to(device)
        self.n_stages = len(layout.stages)
        self.is_first, self.is_last = self.stage_index == 0, self.stage_index == self.n_stages - 1
        self.encoder, self.T, self.scale = net.encoder.to(device), net.T, net.readout_scale
        self.check_input = net.check_input
        self.dp_group = dp_group
        self.local_batch = local_batch
        micro = local_batch // layout.microbatches
        shapes = block_shapes(checked)
        # Shapes only (meta tensors); requires_grad tells a stage which gradients it sends back.
        meta_in = torch.empty((net.T, micro, *shapes[start]), device="meta", requires_grad=not self.is_first)
        meta_out = torch.empty((net.T, micro, *shapes[stop]), device="meta", requires_grad=True)
        self.stage = PipelineStage(self.module, self.stage_index, self.n_stages, device, input_args=meta_in,
                                   output_args=meta_out, group=pp_group)
        # torch's 1F1B wants M >= S; with fewer micro-batches, 1F1B's order is GPipe's anyway.
        gpipe = layout.schedule == "gpipe" or layout.microbatches < self.n_stages
        self.schedule_name: Schedule = "gpipe" if gpipe else "1f1b"
        cls = ScheduleGPipe if self.schedule_name == "gpipe" else Schedule1F1B
        # loss_fn on every rank: it is how a rank learns that a backward pass exists (DESIGN.md).
        self.schedule = cls(self.stage, layout.microbatches, loss_fn=self._loss, args_chunk_spec=(TensorChunkSpec(1),),
                            output_merge_spec=(TensorChunkSpec(1),), scale_grads=False)

    def _loss(self, out: Tensor, y: Tensor) -> Tensor:
        return batch_loss(out, y, self.loss_kind, self.scale, self.local_batch)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder.encode(self.check_input(x), self.T)

    def train_step(self, x: Tensor | None, y: Tensor | None) -> StepResult | None:
        """Forward and backward of one local batch; gradients averaged over the replicas of this stage."""
        losses: list[Tensor] = []
        if self.is_first:
            assert x is not None
            out = self.schedule.step(self.encode(x), target=y if self.is_last else None, losses=losses)
        elif self.is_last:
            out = self.schedule.step(target=y, losses=losses)
        else:
            out = self.schedule.step()
        average_gradients(self.module.parameters(), self.dp_group, self.layout.data_parallel)
        if not self.is_last:
            return None
        assert y is not None
        spikes = out[0] if isinstance(out, tuple) else out
        loss_sum = torch.stack([t.detach() for t in losses]).sum() * self.local_batch
        return StepResult(loss_sum, (spikes.detach().mean(0).argmax(1) == y).sum(), len(y))

    @torch.no_grad()
    def eval_step(self, seq: Tensor | None, y: Tensor | None, valid: int) -> StepResult | None:
        """Forward only through the same pipeline, of an encoded batch `seq` [T, B, ...] on stage 0 (the
        caller encodes: evaluation draws its own random numbers); rows from `valid` on are padding."""
        self.module.eval()
        try:
            # The schedule's loss_fn wants a target on the last stage; its losses are not used here.
            target = y if self.is_last else None
            if self.is_first:
                assert seq is not None
                out = self.schedule.eval(seq, target=target)
            else:
                out = self.schedule.eval(target=target)
        finally:
            self.module.train()
        if not self.is_last:
            return None
        assert y is not None
        return eval_result(out[0] if isinstance(out, tuple) else out, y, valid, self.loss_kind, self.scale)


def eval_result(spikes: Tensor, y: Tensor, valid: int, kind: str, scale: float) -> StepResult:
    """Summed per-sample loss and hits of the first `valid` rows (the rest is padding)."""
    rates, y = spikes.mean(0)[:valid], y[:valid]
    loss = rate_loss(rates, y, kind, scale, reduction="sum")
    if kind == "mse":
        loss = loss / rates.shape[1]
    return StepResult(loss.detach(), (rates.argmax(1) == y).sum(), valid)


def average_gradients(params: Any, group: Any, replicas: int) -> None:
    """Average gradients over a replica group in one flat all-reduce (what DDP does, without its hooks:
    a pipeline's backward runs once per micro-batch, the average is wanted once per step)."""
    if replicas == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=group)
    flat /= replicas
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def average_buffers(module: nn.Module, group: Any, replicas: int) -> None:
    """Average floating-point buffers (batch-norm running statistics) over a replica group, so that every
    replica evaluates with the same statistics (each saw its own share of the batches)."""
    if replicas == 1:
        return
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b, group=group)
            b /= replicas


def stage_layout(stages: Sequence[tuple[int, int]], schedule: str, microbatches: int, data_parallel: int = 1) -> Layout:
    """A Layout from plain (start, stop) ranges."""
    if schedule not in ("gpipe", "1f1b", "interleaved_1f1b"):
        raise LayoutError(f"unknown pipeline schedule {schedule!r}; choose gpipe or 1f1b")
    return Layout(tuple((int(a), int(b)) for a, b in stages), schedule, microbatches, data_parallel)  # type: ignore[arg-type]
