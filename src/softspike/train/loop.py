"""The training loop: Adam (or SGD) on the readout of a spec-built network, resumable exactly.

Exact resume: the shuffle of epoch e comes from a generator seeded with (seed, e); every random
state (torch, numpy, Python: the Poisson encoder and dropout draw from torch's) is saved with each
checkpoint together with the position in the epoch, the optimizer and the scheduler. A run killed at
any moment and resumed from its last checkpoint takes the same batches and reaches the same weights.
Evaluation draws from a stream of its own (`recipe.evaluation_random`), so that it leaves training's
where it was, and a pipelined run (`pipelines.running.worker`) trains on the same spikes epoch after epoch.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softspike.core.registry import Registry
from softspike.kernels.bitpack import compact_saved_spikes
from softspike.models.builder import build
from softspike.models.limits import check_memory, machine_memory
from softspike.models.load import CheckedSpec
from softspike.models.network import SpikingNetwork
from softspike.monitor.board import add_epoch_images
from softspike.train.augment import random_shift
from softspike.train.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    atomic_write,
    load_checkpoint,
    restore_run,
    rng_states,
    save_checkpoint,
    validate_checkpoint,
)
from softspike.train.config import TrainConfig, make_config
from softspike.train.data import ArraySplit, DatasetError
from softspike.train.health import TrainingHealth
from softspike.train.monitor import FiringRates
from softspike.train.progress import Progress, TrainLog
from softspike.train.recipe import (
    check_same_spec,
    epoch_order,
    evaluation_chunks,
    evaluation_random,
    make_optimizer,
    make_scheduler,
    prepare_data,
    readout_loss,
    resolve_device,
    spec_text,
)
from softspike.train.rundir import claim_checkpoint_dir


@torch.no_grad()
def evaluate(net: SpikingNetwork, split: ArraySplit, batch_size: int = 1000, device: str | torch.device = "cpu",
             loss: str = "cross_entropy") -> dict[str, float]:
    """Loss and accuracy of `net` on a whole split (eval mode: batch norm statistics, no dropout)."""
    if len(split) == 0 or batch_size < 1:  # else "accuracy 0.00%" over nothing, or range() with step 0
        raise DatasetError(f"cannot evaluate {len(split)} samples in batches of {batch_size}: need >= 1 of each")
    was_training = net.training
    net.eval()
    total_loss, correct = 0.0, 0
    for start, stop in evaluation_chunks(len(split), batch_size):
        x, y = split.batch(torch.arange(start, stop), device)
        rates = net.spikes(x).mean(0)
        total_loss += float(readout_loss(net, rates, y, loss)) * len(y)
        correct += int((rates.argmax(1) == y).sum())
    net.train(was_training)
    n = max(len(split), 1)
    return {"loss": total_loss / n, "accuracy": correct / n}


def fit(checked: CheckedSpec, options: dict[str, Any] | TrainConfig, logdir: str | Path | None = None,
        checkpoint_dir: str | Path | None = None, resume: bool = False, verbose: bool = True,
        overwrite: bool = False, max_memory: int | None = None, registry: Registry | None = None) -> dict[str, Any]:
    """Train the network of `checked`; returns the metrics (also written to logdir/metrics.json).

    `verbose` prints one line per epoch; the config's `progress` shows a progress bar. `overwrite`
    lets a new run replace another spec's checkpoint in `checkpoint_dir` (refused otherwise).
    A network whose training step at the batch size would need more than `max_memory` bytes
    (default: the device's memory), or a dataset file larger, is refused (SpecError, DatasetError)
    before anything is allocated, as `softspike train --max-memory` does. `registry` builds the
    network from another registry than the process's own (the conformance suite's)."""
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if resume and ckpt_path is None:
        raise CheckpointError("--resume needs --checkpoint DIR, the directory of the run to continue")
    # Locked, writable, cleaned and not another spec's before any work; released however the run ends.
    claim = (claim_checkpoint_dir(ckpt_path.parent, CHECKPOINT_FILE, spec_text(checked), resume, overwrite)
             if ckpt_path is not None else contextlib.nullcontext())
    with claim:
        return _fit(checked, options, logdir, ckpt_path, resume, verbose, max_memory, registry)


def _fit(checked: CheckedSpec, options: dict[str, Any] | TrainConfig, logdir: str | Path | None,
         ckpt_path: Path | None, resume: bool, verbose: bool, max_memory: int | None,
         registry: Registry | None) -> dict[str, Any]:
    stored: dict[str, Any] | None = None
    if resume and ckpt_path is not None:
        stored = validate_checkpoint(load_checkpoint(ckpt_path), ckpt_path, resume=True)
        check_same_spec(stored, checked, ckpt_path)
    opts = options.model_dump() if isinstance(options, TrainConfig) else options
    cfg = make_config(opts, json.loads(stored["config"]) if stored else None)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    device = resolve_device(cfg.device)
    limit = max_memory if max_memory is not None else machine_memory(cfg.device)
    check_memory(checked, cfg.batch_size, limit, "--max-memory SIZE (fit(..., max_memory=BYTES))")
    data = prepare_data(cfg, checked, limit)
    net = build(checked, registry, max_memory=limit).to(device)
    opt = make_optimizer(net, cfg)
    steps_per_epoch = math.ceil(len(data.train) / cfg.batch_size)
    sched = make_scheduler(opt, cfg, steps_per_epoch)
    log = TrainLog.start()
    if stored is not None and ckpt_path is not None:
        log = restore_run(ckpt_path, stored, net, opt, sched)

    health = TrainingHealth(net, steps_per_epoch, ckpt_path,
                            fresh=lambda: build(checked, registry, max_memory=limit).to(device))

    def save(epoch: int, step: int) -> None:
        health.before_save(epoch, step)  # raises rather than save NaN weights
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, {
                "spec": spec_text(checked), "config": json.dumps(cfg.model_dump()), "model": net.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_states(),
                "log": log.state(epoch, step),
            })

    progress = Progress(logdir, cfg.progress, verbose)
    # Plain locals for the hot loop: no model attribute lookups per step.
    bs, shift, loss_kind, every = cfg.batch_size, cfg.augment_shift, cfg.loss, cfg.checkpoint_every
    with FiringRates(net.neuron_layers(), per_neuron=logdir is not None) as monitor:
        for epoch in range(log.epoch, cfg.epochs):
            order = epoch_order(cfg.seed, epoch, len(data.train))
            net.train()
            bar = progress.bar(epoch, cfg.epochs, steps_per_epoch, log.step)
            for step in range(log.step, steps_per_epoch):
                x, y = data.train.batch(order[step * bs:(step + 1) * bs], device)
                if shift:
                    x = random_shift(x, shift)
                with compact_saved_spikes():  # saved spike tensors kept as bits until backward
                    rates = net.spikes(x).mean(0)
                    loss = readout_loss(net, rates, y, loss_kind)
                health.step(loss, epoch, step, x)  # a non-finite loss or weight stops the run here
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                log.add_batch(loss.detach(), (rates.argmax(1) == y).sum(), len(y))
                bar.step(log)
                if every and (step + 1) % every == 0 and step + 1 < steps_per_epoch:
                    save(epoch, step + 1)
            bar.close()
            with evaluation_random(cfg.seed, epoch, device):  # training's stream is left as it was
                test = evaluate(net, data.test, cfg.test_batch_size, device, cfg.loss)
            record = log.end_epoch(epoch, test, monitor.rates(), opt.param_groups[0]["lr"])
            add_epoch_images(progress.writer, net, data.test, monitor, epoch + 1, device)
            monitor.reset()
            health.end_epoch(record)  # warns about silent or saturated layers
            progress.epoch(record)
            save(epoch + 1, 0)
    progress.close()
    metrics = log.metrics(checked.spec.name, cfg.model_dump())
    if logdir is not None:
        text = json.dumps(metrics, indent=2).encode()
        atomic_write(Path(logdir) / "metrics.json", lambda f: f.write(text))
    return metrics
