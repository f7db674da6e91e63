"""The plan's predictions against measurements: run a planned split in one process and time and
weigh each stage, independently of the profile's method (`costs`' saved-tensor rule).

Time: each stage's forward and backward, micro-batch by micro-batch in GPipe order, timed apart
(its input arrives detached, its input gradient is handed back), summed and divided by M; the
fastest of `repeats` steps after a warm-up step, as the profile takes the fastest of its runs.
Memory: parameters, gradients and Adam state as they exist after a real optimizer step, plus the
bytes the stage's M forward passes leave allocated, taken from the PyTorch profiler's allocation
records (not from saved-tensor hooks, which the prediction uses), less the outputs it sends on
and plus the inputs it receives: what a stage process would hold at the end of the forwards
(the peak under GPipe; the backward's transient gradients are not counted on either side).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from softspike.models.builder import build
from softspike.models.load import CheckedSpec, load_spec
from softspike.models.network import SpikingNetwork
from softspike.pipelines.costs import Clock, clock_ms, nbytes
from softspike.pipelines.planning.document import PipelinePlan
from softspike.pipelines.planning.planner import make_plan
from softspike.pipelines.planning.profile import profile_spec


@dataclass(frozen=True)
class StageCheck:
    """One stage's predicted and measured time (fwd+bwd per micro-batch) and memory."""

    index: int
    blocks: str
    predicted_ms: float
    measured_ms: float
    predicted_bytes: int
    measured_bytes: int

    @property
    def time_ratio(self) -> float:
        return self.predicted_ms / self.measured_ms if self.measured_ms > 0 else float("inf")

    @property
    def memory_ratio(self) -> float:
        return self.predicted_bytes / self.measured_bytes if self.measured_bytes > 0 else float("inf")


def _retained_bytes(fn: Any) -> int:
    """Bytes allocated and not freed while `fn` runs (the profiler's CPU allocation records). The
    fused kernels' buffer cache is switched off meanwhile: a recycled buffer is no allocation, and
    the cache keeps freed buffers (memory reserved, like CUDA's caching allocator, not allocated)."""
    from torch.profiler import ProfilerActivity, profile

    from softspike.kernels.pool import POOL

    cap, POOL.max_bytes = POOL.max_bytes, 0
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    finally:
        POOL.max_bytes = cap
    return int(sum(e.self_cpu_memory_usage for e in prof.events()))


def _stage_modules(net: nn.Module, plan: PipelinePlan) -> list[nn.Sequential]:
    return [nn.Sequential(*list(net.body)[s.start:s.stop]) for s in plan.stages]  # type: ignore[arg-type]


def _forwards(
    net: SpikingNetwork, stage: nn.Module, s: int, plan: PipelinePlan, xs: list[Tensor],
    inputs: list[list[Tensor]], outputs: list[list[Tensor]], elapsed: list[float], clock: Clock,
) -> None:
    """Stage s's forward of every micro-batch (stage 0 encodes; later ones take a detached input)."""
    for k in range(plan.microbatches):
        t0 = clock_ms(clock)
        if s == 0:
            with torch.no_grad():
                src = net.encoder.encode(xs[k], plan.T)
        else:
            src = outputs[s - 1][k].detach().requires_grad_(True)
        out = stage(src)
        elapsed[s] += clock_ms(clock) - t0
        inputs[s].append(src)
        outputs[s].append(out)


def measure_plan(
    checked: CheckedSpec, plan: PipelinePlan, repeats: int = 3, seed: int = 0, clock: Clock = "wall"
) -> list[tuple[float, int]]:
    """(fwd+bwd ms per micro-batch, bytes) of every stage of `plan`, run in this process (GPipe order)."""
    torch.manual_seed(seed)
    net = build(checked).train()
    stages = _stage_modules(net, plan)
    mb = plan.batch_size // plan.microbatches
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.rand((mb, *net.input_shape), generator=gen) for _ in range(plan.microbatches)]
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    totals: list[list[float]] = [[] for _ in stages]
    held = [0] * len(stages)
    for run in range(repeats + 1):  # run 0 warms up, and its forwards are the ones weighed
        elapsed = [0.0] * len(stages)
        inputs: list[list[Tensor]] = [[] for _ in stages]
        outputs: list[list[Tensor]] = [[] for _ in stages]
        for s, stage in enumerate(stages):
            forwards = functools.partial(_forwards, net, stage, s, plan, xs, inputs, outputs, elapsed, clock)
            if run == 0:
                retained = _retained_bytes(forwards)
                sent = nbytes(outputs[s]) if s < len(stages) - 1 else 0
                received = nbytes(inputs[s]) if s > 0 else 0  # made by the previous stage's window
                held[s] = retained - sent + received
            else:
                forwards()
        optimizer.zero_grad(set_to_none=True)
        for s in range(len(stages) - 1, -1, -1):
            for k in range(plan.microbatches):
                out = outputs[s][k]
                grad = torch.ones_like(out) if s == len(stages) - 1 else inputs[s + 1][k].grad
                t0 = clock_ms(clock)
                if out.requires_grad:
                    out.backward(grad)
                elapsed[s] += clock_ms(clock) - t0
        optimizer.step()
        if run:
            for s in range(len(stages)):
                totals[s].append(elapsed[s] / plan.microbatches)
    result = []
    for s, stage in enumerate(stages):
        params = list(stage.parameters())
        state = nbytes(params) + nbytes(stage.buffers()) + nbytes(p.grad for p in params)
        state += sum(nbytes(optimizer.state[p].values()) for p in params if p in optimizer.state)
        # Adam's step counters are 4-byte scalars per parameter: not what a plan is about, left out.
        state -= sum(4 for p in params if p in optimizer.state)
        result.append((min(totals[s]), state + held[s]))
    return result


def compare_prediction(
    checked: CheckedSpec,
    batch_size: int = 16,
    microbatches: int = 4,
    stages: int = 2,
    repeats: int = 10,
    seed: int = 0,
) -> tuple[PipelinePlan, list[StageCheck]]:
    """Plan `checked` into `stages` CPU stages under GPipe,
    then measure the split in one process: predicted against measured time and memory per stage.

    Both sides run one-threaded and time with this thread's CPU clock, so that other processes on
    a shared machine (2 cores, several jobs) do not stretch one side's timings and not the other's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        prof = profile_spec(checked, batch_size // microbatches, repeats=repeats, seed=seed, clock="thread")
        plan = make_plan(checked, ["cpu"] * stages, batch_size, microbatches, "gpipe", profile=prof).plan
        measured = measure_plan(checked, plan, repeats=repeats, seed=seed, clock="thread")
    finally:
        torch.set_num_threads(threads)
    checks = [
        StageCheck(s.index, f"{s.blocks[0]}..{s.blocks[-1]}", s.predicted_time_ms, ms, s.predicted_memory_bytes, mem)
        for s, (ms, mem) in zip(plan.stages, measured, strict=True)
    ]
    return plan, checks


def format_checks(checks: list[StageCheck]) -> str:
    """A small table: predicted / measured time and memory per stage, with the ratios."""
    lines = ["stage  blocks                 time pred/meas (ms)      memory pred/meas (MiB)"]
    for c in checks:
        lines.append(
            f"{c.index:<5}  {c.blocks:<21}  {c.predicted_ms:7.2f} / {c.measured_ms:7.2f} ({c.time_ratio:4.2f})  "
            f"{c.predicted_bytes / 2**20:8.2f} / {c.measured_bytes / 2**20:8.2f} ({c.memory_ratio:4.2f})"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # python -m softspike.pipelines.planning.check SPEC (a spec file or a zoo name)
    import sys

    plan, checks = compare_prediction(load_spec(sys.argv[1] if len(sys.argv) > 1 else "mnist_conv"))
    print(format_checks(checks))
