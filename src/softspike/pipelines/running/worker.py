"""The training loop of one process of a pipelined and/or data-parallel run (started by torchrun).

The same loop as `softspike.train.loop.fit` (same config, optimizer, schedule, epoch shuffle, logs),
spread over a [stages x replicas] mesh of processes:

- The global batch b of step s is the one a single process would take, `order[s*B:(s+1)*B]` with
  `order = epoch_order(seed, epoch)`; replica r gets every R-th sample of it through a
  `DistributedSampler` over `order` (no shuffle of its own). A last partial batch is dropped.
- Stage 0 reads the images, the last stage the labels; the rank holding the last stage of replica 0 is
  the one that "sees the loss": it prints, writes TensorBoard and metrics.json, once.
- Checkpoints: one file per process and a marker written when all are complete (runtime_checkpoint).
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DistributedSampler

from softspike import _console
from softspike.models.builder import build
from softspike.models.load import CheckedSpec
from softspike.pipelines.costs import in_flight, measure_stage, peak_memory, stage_input
from softspike.pipelines.running.checkpoint import load_distributed, save_distributed
from softspike.pipelines.running.ddp import DDPRuntime
from softspike.pipelines.running.stages import (
    Layout,
    LayoutError,
    PipelineRuntime,
    StepResult,
    average_buffers,
    block_shapes,
)
from softspike.train.augment import random_shift
from softspike.train.checkpoint import atomic_write, rng_states, set_rng_states
from softspike.train.config import TrainConfig, make_config
from softspike.train.data import ArraySplit
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
    spec_text,
)

#: Seconds a collective may wait before the process fails (a dead peer must not hang a job forever).
TIMEOUT_ENV = "SOFTSPIKE_DIST_TIMEOUT"


def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) of a process started by torchrun / torch's elastic launcher."""
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise LayoutError(
            "--pipeline and --ddp run one process per stage or replica: start them with "
            "`torchrun --nproc-per-node N -m softspike train ...`, or let softspike start them with --nproc N"
        ) from None


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise LayoutError(f"--device {cfg.device}: CUDA is not available in this process")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if cfg.device != "cpu":
        raise LayoutError(f"--device {cfg.device!r}: a multi-process run takes cpu or cuda (one GPU per process)")
    return torch.device("cpu")


def _top_index(path: str) -> int:
    return int(path.split("]", 1)[0].split("[", 1)[1])


class _Run:
    """Everything one process holds during a run."""

    def __init__(self, checked: CheckedSpec, cfg: TrainConfig, layout: Layout, mode: str, rank: int,
                 device: torch.device) -> None:
        self.checked, self.cfg, self.layout, self.mode = checked, cfg, layout, mode
        self.rank, self.device = rank, device
        self.stage, self.replica = layout.place(rank)
        self.local_batch = cfg.batch_size // layout.data_parallel
        mesh = torch.distributed.device_mesh.init_device_mesh(
            device.type, (len(layout.stages), layout.data_parallel), mesh_dim_names=("pp", "dp"))
        self.dp_group = mesh.get_group("dp")
        torch.manual_seed(cfg.seed)  # every process builds the same initial network as one process would
        np.random.seed(cfg.seed % 2**32)
        random.seed(cfg.seed)
        net = build(checked)
        if self.replica:  # replicas draw their own dropout masks and encodings
            torch.manual_seed(cfg.seed + 1_000_003 * self.replica)
        if mode == "ddp":
            self.engine: PipelineRuntime | DDPRuntime = DDPRuntime(net, self.replica, device, cfg.loss, self.dp_group,
                                                                   self.local_batch)
        else:
            self.engine = PipelineRuntime(net, checked, layout, rank, device, cfg.loss, mesh.get_group("pp"),
                                          self.dp_group, self.local_batch)
        start, stop = layout.stages[self.stage]
        self.start = start
        self.neurons = [(p, m) for p, m in net.neuron_layers() if start <= _top_index(p) < stop]
        self.sees_loss = self.engine.is_last and self.replica == 0
        self.step_times: list[float] = []

    def shard(self, order: Tensor) -> Tensor:
        """This replica's samples of the epoch, in step order (see the module docstring)."""
        positions: Any = range(len(order))  # a sized sequence is all the sampler reads
        sampler: DistributedSampler[int] = DistributedSampler(
            positions, num_replicas=self.layout.data_parallel, rank=self.replica, shuffle=False, drop_last=True)
        return order[torch.tensor(list(sampler), dtype=torch.long)]

    def reduce(self, result: StepResult) -> tuple[float, int, int]:
        """Sum a loss rank's result over the replicas of the last stage."""
        t = torch.stack([result.loss_sum.float().cpu(), result.correct.float().cpu(),
                         torch.tensor(float(result.count))]).to(self.device)
        if self.layout.data_parallel > 1:
            dist.all_reduce(t, group=self.dp_group)
        loss, correct, count = t.tolist()
        return loss, int(correct), int(count)

    def train_batch(self, split: ArraySplit, index: Tensor) -> tuple[float, int, int] | None:
        x, y = split.batch(index, self.device)
        if self.engine.is_first and self.cfg.augment_shift:
            x = random_shift(x, self.cfg.augment_shift)
        t0 = time.perf_counter()
        result = self.engine.train_step(x if self.engine.is_first else None, y if self.engine.is_last else None)
        self.step_times.append(time.perf_counter() - t0)
        return self.reduce(result) if result is not None else None

    def evaluate(self, split: ArraySplit, epoch: int) -> dict[str, float]:
        """Loss and accuracy over a whole split, through the same pipeline, with the random draws of one
        process: stage 0 encodes the split in one process's evaluation batches (`test_batch_size`), from
        the evaluation stream (`recipe.evaluation_random`), and feeds each encoded batch to the pipeline
        in slices of its batch shape (the last one padded with copies of the batch's last sample)."""
        b, r = self.local_batch, self.layout.data_parallel
        if self.mode == "pipeline":  # DDP itself broadcasts replica 0's buffers at every forward
            average_buffers(self.engine.module, self.dp_group, r)
        loss = correct = count = 0.0
        with evaluation_random(self.cfg.seed, epoch, self.device):
            for start, stop in evaluation_chunks(len(split), self.cfg.test_batch_size):
                n = stop - start
                x, y = split.batch(torch.arange(start, stop), self.device)
                seq = self.engine.encode(x) if self.engine.is_first else None  # every replica: the same draws
                for offset in range(0, n, b * r):
                    rows = torch.arange(offset + self.replica * b, offset + (self.replica + 1) * b)
                    valid = int((rows < n).sum())
                    rows = rows.clamp(max=n - 1).to(self.device)
                    result = self.engine.eval_step(seq[:, rows] if seq is not None else None,
                                                   y[rows] if self.engine.is_last else None, valid)
                    if result is not None:
                        loss, correct, count = loss + float(result.loss_sum), correct + int(result.correct), \
                            count + valid
        if self.engine.is_last and r > 1:
            t = torch.tensor([loss, correct, count], dtype=torch.float64).to(self.device)
            dist.all_reduce(t, group=self.dp_group)
            loss, correct, count = t.tolist()
        n_all = max(count, 1)
        return {"loss": loss / n_all, "accuracy": correct / n_all}

    def stage_report(self, opt: torch.optim.Optimizer) -> dict[str, Any]:
        """This stage measured on its own process by the rule the plan predicts with (`pipelines.costs`)."""
        micro = self.local_batch // (self.layout.microbatches if self.mode == "pipeline" else 1)
        engine, T = self.engine, self.checked.spec.T
        if engine.is_first:
            make_input = stage_input((micro, *self.checked.spec.input_shape), self.device, engine.encode)
        else:
            make_input = stage_input((T, micro, *block_shapes(self.checked)[self.start]), self.device)
        held, recompute = 1, False
        if isinstance(engine, PipelineRuntime):
            held = in_flight(engine.schedule_name, self.stage, len(self.layout.stages), self.layout.microbatches)
            recompute = bool(self.layout.recompute and self.layout.recompute[self.stage])
        cost = measure_stage(engine.module, make_input, self.device, opt, held, recompute)
        steps = self.step_times[1:] or self.step_times
        return {"stage": self.stage, "replica": self.replica, "rank": self.rank,
                "blocks": list(self.layout.stages[self.stage]),
                "measured_time_ms": cost["time_ms"], "measured_memory_bytes": cost["memory_bytes"],
                "state_bytes": cost["state_bytes"], "input_bytes_per_microbatch": cost["input_bytes"],
                "activation_bytes_per_microbatch": cost["activation_bytes"], "microbatches_in_flight": held,
                "mean_step_ms": 1000 * sum(steps) / max(len(steps), 1), **peak_memory(self.device)}


def _gather(obj: Any) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _merge_rates(per_rank: list[dict[str, float]]) -> dict[str, float]:
    """Firing rates of every neuron layer, averaged over the replicas that hold it."""
    sums: dict[str, list[float]] = {}
    for rates in per_rank:
        for path, rate in rates.items():
            sums.setdefault(path, []).append(rate)
    return {p: sum(v) / len(v) for p, v in sorted(sums.items(), key=lambda kv: _path_key(kv[0]))}


def _path_key(path: str) -> list[int]:
    return [int(part.split("]")[0]) for part in path.split("[")[1:]]


def train_distributed(checked: CheckedSpec, options: dict[str, Any], layout: Layout, mode: str = "pipeline",
                      logdir: str | Path | None = None, checkpoint_dir: str | Path | None = None, resume: bool = False,
                      verbose: bool = True, predictions: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Train on this process's part of `layout`; returns the metrics on the rank that sees the loss
    (which also writes logdir/metrics.json and TensorBoard), None on the others.

    `mode`: "pipeline" (stages on torch.distributed.pipelining, their replicas averaged) or "ddp"
    (one stage, DistributedDataParallel). `predictions`: a plan's per-stage predictions, reported
    beside the measured values."""
    return prepare_distributed(checked, options, layout, mode, logdir, checkpoint_dir, resume, verbose,
                               predictions).run()


@dataclass(frozen=True)
class PreparedRun:
    """One process's part of a run, checked and its data read: what is left needs the other processes
    (`run()` joins the process group, trains, leaves it)."""

    checked: CheckedSpec
    cfg: TrainConfig
    layout: Layout
    mode: str
    rank: int
    device: torch.device
    data: Any
    logdir: str | Path | None
    folder: Path | None
    stored: dict[str, Any] | None
    verbose: bool
    predictions: list[dict[str, Any]] | None

    def run(self) -> dict[str, Any] | None:
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # before NCCL: each process binds to its own GPU
        dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo", timeout=timeout)
        try:
            result = _train(self.checked, self.cfg, self.layout, self.mode, self.rank, self.device, self.data,
                            self.logdir, self.folder, self.stored, self.verbose, self.predictions)
            dist.barrier()  # no rank tears its group down while another still has a transfer in flight
            return result
        finally:
            # A rank-0 SIGABRT at exit ('terminate called without an active exception', about 2 in 9 loaded
            # full-suite runs of test_pipeline_runtime_epochs, never in 136 runs of that command alone) fits
            # torch's known exit crash: gloo work objects that outlive the group are destroyed while the
            # interpreter shuts down. So the schedule's finished transfers are freed here, while the group
            # and the interpreter are alive, and the process then ends without finalising the interpreter
            # (softspike._console.exit_without_finalizing, honoured by the `softspike` program).
            gc.collect()
            dist.destroy_process_group()
            gc.collect()
            _console.exit_without_finalizing()


def prepare_distributed(checked: CheckedSpec, options: dict[str, Any], layout: Layout, mode: str = "pipeline",
                        logdir: str | Path | None = None, checkpoint_dir: str | Path | None = None,
                        resume: bool = False, verbose: bool = True,
                        predictions: list[dict[str, Any]] | None = None) -> PreparedRun:
    """Everything this process does before it meets the others (`train_distributed`'s arguments):
    its stage's checkpoint, the config, the device, the data. The errors raised here come before any
    process group, so a job stops on them without a timeout."""
    rank, world, local_rank = distributed_env()
    layout.check(len(checked.spec.layers), world)
    stage, replica = layout.place(rank)
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    stored: dict[str, Any] | None = None
    if resume:
        if folder is None:
            raise LayoutError("--resume needs --checkpoint DIR, the directory of the run to continue")
        stored = load_distributed(folder, layout, mode, stage, replica)
        check_same_spec(stored, checked, folder)
    cfg = make_config(options, json.loads(stored["config"]) if stored else None)
    layout.check(len(checked.spec.layers), world, cfg.batch_size)
    device = _device(cfg, local_rank)
    data = prepare_data(cfg, checked)
    if len(data.train) < cfg.batch_size:  # the last partial batch is dropped: no step at all
        raise LayoutError(f"--batch-size {cfg.batch_size} is larger than the {len(data.train)} training samples")
    return PreparedRun(checked, cfg, layout, mode, rank, device, data, logdir, folder, stored, verbose, predictions)


def _train(checked: CheckedSpec, cfg: TrainConfig, layout: Layout, mode: str, rank: int, device: torch.device,
           data: Any, logdir: str | Path | None, folder: Path | None, stored: dict[str, Any] | None, verbose: bool,
           predictions: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    run = _Run(checked, cfg, layout, mode, rank, device)
    module = run.engine.module
    opt = make_optimizer(module, cfg)
    steps_per_epoch = len(data.train) // cfg.batch_size
    sched = make_scheduler(opt, cfg, steps_per_epoch)
    log = TrainLog.start()
    if stored is not None:
        module.load_state_dict({k.removeprefix("body."): v for k, v in stored["model"].items()})
        opt.load_state_dict(stored["optimizer"])
        sched.load_state_dict(stored["scheduler"])
        log = TrainLog.from_state(stored["log"])
        set_rng_states(stored["rng"])

    def save(epoch: int, step: int) -> None:
        if folder is not None:
            state = {"spec": spec_text(checked), "config": json.dumps(cfg.model_dump()),
                     "model": {f"body.{k}": v for k, v in module.state_dict().items()},
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_states(),
                     "log": log.state(epoch, step)}
            save_distributed(folder, epoch * steps_per_epoch + step, layout, mode, run.stage, run.replica, state)

    progress = Progress(logdir if run.sees_loss else None, cfg.progress and run.sees_loss, verbose and run.sees_loss)
    b, every, zero = run.local_batch, cfg.checkpoint_every, torch.zeros(())
    with FiringRates(run.neurons) as monitor:
        for epoch in range(log.epoch, cfg.epochs):
            local = run.shard(epoch_order(cfg.seed, epoch, len(data.train)))
            module.train()
            bar = progress.bar(epoch, cfg.epochs, steps_per_epoch, log.step)
            for step in range(log.step, steps_per_epoch):
                seen = run.train_batch(data.train, local[step * b:(step + 1) * b])
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                if seen is None:
                    log.add_batch(zero, zero, cfg.batch_size)
                else:
                    loss_sum, correct, count = seen
                    log.add_batch(torch.tensor(loss_sum / count), torch.tensor(correct), count)
                bar.step(log)
                if every and (step + 1) % every == 0 and step + 1 < steps_per_epoch:
                    save(epoch, step + 1)
            bar.close()
            test = run.evaluate(data.test, epoch)
            rates = _merge_rates(_gather(monitor.rates()))
            record = log.end_epoch(epoch, test, rates, opt.param_groups[0]["lr"])
            monitor.reset()
            progress.epoch(record)
            save(epoch + 1, 0)
    progress.close()
    stages = _gather(run.stage_report(opt))
    if not run.sees_loss:
        return None
    metrics = log.metrics(checked.spec.name, cfg.model_dump())
    metrics["distributed"] = {
        "mode": mode, "world_size": layout.world_size, "stages": len(layout.stages),
        "data_parallel": layout.data_parallel, "schedule": getattr(run.engine, "schedule_name", None),
        "microbatches": layout.microbatches if mode == "pipeline" else None,
        "processes": _with_predictions(stages, predictions)}
    if logdir is not None:
        text = json.dumps(metrics, indent=2).encode()
        atomic_write(Path(logdir) / "metrics.json", lambda f: f.write(text))
    return metrics


def _with_predictions(stages: list[dict[str, Any]], predictions: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not predictions:
        return stages
    for s in stages:
        p = predictions[s["stage"]]
        s["predicted_time_ms"], s["predicted_memory_bytes"] = p["predicted_time_ms"], p["predicted_memory_bytes"]
        if p["predicted_time_ms"]:
            s["time_ratio"] = s["measured_time_ms"] / p["predicted_time_ms"]
        if p["predicted_memory_bytes"]:
            s["memory_ratio"] = s["measured_memory_bytes"] / p["predicted_memory_bytes"]
    return stages


__all__ = ["PreparedRun", "distributed_env", "prepare_distributed", "train_distributed"]
