"""Spec + devices + batch -> PipelinePlan: profile at the micro-batch size, partition, predict."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from softspike.models.load import CheckedSpec
from softspike.pipelines.planning.document import PLAN_FORMAT, PipelinePlan, PlanError, StagePlan, spec_digest
from softspike.pipelines.planning.partition import CostTable, Device, Schedule, partition
from softspike.pipelines.planning.profile import Profile, profile_spec


@dataclass(frozen=True)
class PlanResult:
    plan: PipelinePlan
    profile: Profile
    notes: list[str]


def default_devices(stages: int) -> list[str]:
    """`--stages N` without `--devices`: the first N GPUs where there are enough, else N CPU stages."""
    if torch.cuda.is_available() and torch.cuda.device_count() >= stages:
        return [f"cuda:{i}" for i in range(stages)]
    return ["cpu"] * stages


def device_memory(name: str) -> int | None:
    """The total memory of a CUDA device that is present; None (no cap) otherwise."""
    dev = torch.device(name)
    if dev.type == "cuda" and torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count():
        return int(torch.cuda.get_device_properties(dev.index or 0).total_memory)
    return None


def microbatch_size(batch_size: int, microbatches: int, data_parallel: int = 1) -> int:
    """Samples per micro-batch: the global batch shared by the replicas, each split into M parts."""
    if microbatches < 1 or batch_size < 1 or data_parallel < 1:
        raise PlanError(f"batch size ({batch_size}), micro-batches ({microbatches}) and replicas "
                        f"({data_parallel}) must be >= 1")
    parts = microbatches * data_parallel
    if batch_size % parts:
        what = f"{microbatches} equal micro-batches" + (f" on each of {data_parallel} replicas" if data_parallel > 1
                                                        else "")
        raise PlanError(f"--batch-size {batch_size} does not split into {what}; "
                        f"use a batch size that is a multiple of {parts}")
    return batch_size // parts


def make_plan(
    checked: CheckedSpec,
    devices: list[str],
    batch_size: int,
    microbatches: int,
    schedule: Schedule = "1f1b",
    memory: list[int | None] | None = None,
    speed: list[float] | None = None,
    bandwidth_bytes_per_s: float = math.inf,
    allow_recompute: bool = False,
    T: int | None = None,
    repeats: int = 3,
    profile: Profile | None = None,
    data_parallel: int = 1,
) -> PlanResult:
    """Profile the spec on the first device at micro-batch size B/(R·M) and split it over `devices`
    (one pipeline; with R = `data_parallel` replicas of it, each takes B/R samples per step)."""
    S = len(devices)
    mb = microbatch_size(batch_size, microbatches, data_parallel)
    memory = memory or [device_memory(d) for d in devices]
    speed = speed or [1.0] * S
    if len(memory) != S or len(speed) != S:
        raise PlanError(f"give one memory cap and one speed per device ({S} devices), or one for all")
    prof = profile or profile_spec(checked, mb, T=T, device=devices[0], repeats=repeats)
    n = len(checked.spec.layers)
    if len(prof.blocks) != n:
        raise PlanError(f"the profile has {len(prof.blocks)} blocks, the spec {n}")
    devs = [Device(d, m, s) for d, m, s in zip(devices, memory, speed, strict=True)]
    part = partition(CostTable.from_profile(prof), devs, microbatches, schedule, bandwidth_bytes_per_s,
                     allow_recompute)
    stages = [
        StagePlan(
            index=i, device=devices[i], blocks=[f"layers[{j}]" for j in range(c.start, c.stop)],
            start=c.start, stop=c.stop, recompute=c.recompute, predicted_time_ms=c.time_ms,
            predicted_memory_bytes=c.memory_bytes,
            boundary_bytes=prof.blocks[c.stop - 1].output_bytes if c.stop < n else 0,
        )
        for i, c in enumerate(part.stages)
    ]
    plan = PipelinePlan(
        format=PLAN_FORMAT, spec_name=checked.spec.name, spec_sha256=spec_digest(checked), n_blocks=n,
        batch_size=batch_size, microbatches=microbatches, schedule=schedule, T=prof.T, stages=stages,
        data_parallel=data_parallel, predicted_step_ms=part.step_ms, predicted_bubble=part.bubble,
        predicted_images_per_s=batch_size / (part.step_ms / 1e3) if part.step_ms > 0 else 0.0,
    )
    return PlanResult(plan, prof, list(prof.notes))
