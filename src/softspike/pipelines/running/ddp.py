"""Data parallel training of a whole spec-built network: DistributedDataParallel, one process per device.

Each replica runs the whole network on its share of the batch (B / R samples) with the loss
`sum_i l_i / (B / R)`; DDP averages the gradients over the R replicas, which gives the gradient of the
whole batch's mean loss. Batch norm in training mode normalises over each replica's share (as it does
over each micro-batch in a pipeline); DDP broadcasts replica 0's buffers (running statistics) at each
forward, so every replica evaluates with the same statistics.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from softspike.models.network import SpikingNetwork
from softspike.pipelines.running.stages import StageBlocks, StepResult, eval_result
from softspike.train.recipe import batch_loss


class DDPRuntime:
    """The whole network on this process, its gradients averaged over the data-parallel group."""

    is_first = True
    is_last = True
    stage_index = 0

    def __init__(self, net: SpikingNetwork, replica: int, device: torch.device, loss: str, dp_group: Any,
                 local_batch: int) -> None:
        self.replica, self.device, self.loss_kind, self.local_batch = replica, device, loss, local_batch
        self.module = StageBlocks(net.body, 0, len(net.body)).to(device)
        self.encoder, self.T, self.scale, self.check_input = net.encoder.to(device), net.T, net.readout_scale, \
            net.check_input
        ids = [device.index] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(self.module, device_ids=ids, process_group=dp_group)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder.encode(self.check_input(x), self.T)

    def train_step(self, x: Tensor | None, y: Tensor | None) -> StepResult:
        assert x is not None and y is not None
        spikes = self.ddp(self.encode(x))
        loss = batch_loss(spikes, y, self.loss_kind, self.scale, self.local_batch)
        loss.backward()
        correct = (spikes.detach().mean(0).argmax(1) == y).sum()
        return StepResult(loss.detach() * self.local_batch, correct, len(y))

    @torch.no_grad()
    def eval_step(self, seq: Tensor | None, y: Tensor | None, valid: int) -> StepResult:
        """The whole network on an encoded batch `seq` [T, B, ...]; rows from `valid` on are padding."""
        assert seq is not None and y is not None
        self.module.eval()
        try:
            spikes = self.module(seq)
        finally:
            self.module.train()
        return eval_result(spikes, y, valid, self.loss_kind, self.scale)
