"""Contiguous blocks into S pipeline stages: minimise the slowest stage under per-device memory caps.

A stage s on device d_s runs blocks [a, b). Per micro-batch, with costs from the profile:

    time_s   = (Σ_{i∈[a,b)} t_i + r_s·Σ f_i) / speed_s  +  (out_{b-1}·[b<n] + in_a·[a>0]) / bandwidth
    memory_s = Σ state_i + k_s · (in_a + Σ act_i + Σ_{a<i<b} insaved_i)              (r_s = 0)
    memory_s = Σ state_i + k_s · in_a + (Σ act_i + Σ_{a<i<b} insaved_i)              (r_s = 1)

t_i forward+backward time, f_i forward time (recomputed in backward when r_s = 1), state_i the
parameter + gradient + optimizer bytes, act_i the bytes saved for backward (the rule of
`pipelines.costs`, which also weighs a running stage), in_a the stage's input
(it sends its gradient back) and out_{b-1} its output (sent on). k_s is the number of micro-batches
whose activations the stage holds at once: M under GPipe, min(M, S - s) under 1F1B.

The partition minimises max_s time_s subject to memory_s <= cap_s, exactly, by dynamic programming
over (stages placed, blocks covered): F[s][j] = min_{i<j} max(F[s-1][i], time_s(i, j)), O(S·n²).
With `allow_recompute`, a stage that does not fit may recompute its activations (counting f).
A fill-and-drain schedule (GPipe or 1F1B, one chunk per stage) then takes

    step = Σ_s time_s + (M - 1) · max_s time_s,    bubble = 1 - M·Σ_s time_s / (S · step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from softspike.pipelines.costs import Schedule, in_flight, stage_memory
from softspike.pipelines.planning.document import PlanError
from softspike.pipelines.planning.profile import Profile

INF = math.inf


@dataclass(frozen=True)
class Device:
    """A device a stage may run on: its memory cap (None: unlimited) and relative speed."""

    name: str
    memory_bytes: int | None = None
    speed: float = 1.0


@dataclass(frozen=True)
class CostTable:
    """Per-block costs the partitioner works on (from a Profile, or made up in tests)."""

    time_ms: list[float]
    forward_ms: list[float]
    state_bytes: list[int]
    activation_bytes: list[int]
    input_saved_bytes: list[int]
    output_bytes: list[int]
    input_bytes: int

    @classmethod
    def from_profile(cls, profile: Profile) -> CostTable:
        b = profile.blocks
        return cls([c.time_ms for c in b], [c.forward_ms for c in b], [c.state_bytes for c in b],
                   [c.activation_bytes for c in b], [c.input_saved_bytes for c in b],
                   [c.output_bytes for c in b], profile.input_bytes)

    @property
    def n(self) -> int:
        return len(self.time_ms)

    def boundary_in(self, a: int) -> int:
        return self.input_bytes if a == 0 else self.output_bytes[a - 1]


@dataclass(frozen=True)
class StageCost:
    start: int
    stop: int
    recompute: bool
    time_ms: float
    memory_bytes: int


@dataclass(frozen=True)
class Partition:
    stages: list[StageCost]
    step_ms: float
    bubble: float

    @property
    def bottleneck_ms(self) -> float:
        return max(s.time_ms for s in self.stages)


def stage_cost(
    table: CostTable, a: int, b: int, stage: int, devices: list[Device], microbatches: int,
    schedule: Schedule, bandwidth_bytes_per_s: float, recompute: bool,
) -> StageCost:
    """Time and memory of blocks [a, b) as stage `stage` (see the module docstring)."""
    dev = devices[stage]
    compute = sum(table.time_ms[a:b]) + (sum(table.forward_ms[a:b]) if recompute else 0.0)
    sent = (table.output_bytes[b - 1] if b < table.n else 0) + (table.boundary_in(a) if a > 0 else 0)
    comm_ms = sent / bandwidth_bytes_per_s * 1e3 if math.isfinite(bandwidth_bytes_per_s) else 0.0
    k = in_flight(schedule, stage, len(devices), microbatches)
    held = sum(table.activation_bytes[a:b]) + sum(table.input_saved_bytes[a + 1:b])
    state = sum(table.state_bytes[a:b])
    inp = table.boundary_in(a)
    memory = stage_memory(state, inp, held, k, recompute)
    return StageCost(a, b, recompute, compute / dev.speed + comm_ms, memory)


def _fits(cost: StageCost, dev: Device) -> bool:
    return dev.memory_bytes is None or cost.memory_bytes <= dev.memory_bytes


def _best_stage(
    table: CostTable, a: int, b: int, stage: int, devices: list[Device], microbatches: int,
    schedule: Schedule, bandwidth: float, allow_recompute: bool,
) -> StageCost | None:
    """The faster of the variants of [a, b) that fit stage `stage`'s device, or None."""
    plain = stage_cost(table, a, b, stage, devices, microbatches, schedule, bandwidth, False)
    if _fits(plain, devices[stage]):
        return plain
    if allow_recompute:
        re = stage_cost(table, a, b, stage, devices, microbatches, schedule, bandwidth, True)
        if _fits(re, devices[stage]):
            return re
    return None


def pipeline_step(times: list[float], microbatches: int) -> tuple[float, float]:
    """(step time, bubble fraction) of a fill-and-drain schedule with these stage times."""
    total, worst, S = sum(times), max(times), len(times)
    step = total + (microbatches - 1) * worst
    bubble = 1.0 - microbatches * total / (S * step) if step > 0 else 0.0
    return step, max(0.0, bubble)


def partition(
    table: CostTable,
    devices: list[Device],
    microbatches: int,
    schedule: Schedule = "1f1b",
    bandwidth_bytes_per_s: float = INF,
    allow_recompute: bool = False,
) -> Partition:
    """Optimal contiguous split of the blocks over `devices` (one stage each, in order)."""
    n, S = table.n, len(devices)
    if S < 1:
        raise PlanError("partition: no devices given")
    if microbatches < 1:
        raise PlanError(f"partition: microbatches must be >= 1, got {microbatches}")
    if S > n:
        raise PlanError(f"cannot split {n} top-level blocks into {S} stages: use at most {n} stages")
    best: list[list[float]] = [[INF] * (n + 1) for _ in range(S + 1)]
    choice: list[list[tuple[int, StageCost] | None]] = [[None] * (n + 1) for _ in range(S + 1)]
    best[0][0] = 0.0
    for s in range(1, S + 1):
        # Stage s-1 ends at j; every earlier stage needs a block, every later one too.
        for j in range(s, n - (S - s) + 1):
            for i in range(s - 1, j):
                if best[s - 1][i] == INF:
                    continue
                cost = _best_stage(table, i, j, s - 1, devices, microbatches, schedule,
                                   bandwidth_bytes_per_s, allow_recompute)
                if cost is None:
                    continue
                value = max(best[s - 1][i], cost.time_ms)
                if value < best[s][j]:
                    best[s][j], choice[s][j] = value, (i, cost)
    if best[S][n] == INF:
        raise PlanError(_no_fit_message(table, devices, microbatches, schedule, bandwidth_bytes_per_s,
                                        allow_recompute))
    stages: list[StageCost] = []
    j = n
    for s in range(S, 0, -1):
        picked = choice[s][j]
        assert picked is not None  # a finite best value always has its choice recorded
        i, cost = picked
        stages.append(cost)
        j = i
    stages.reverse()
    step, bubble = pipeline_step([c.time_ms for c in stages], microbatches)
    return Partition(stages, step, bubble)


def _least_overloaded(
    table: CostTable, devices: list[Device], microbatches: int, schedule: Schedule, bandwidth: float,
    recompute: bool,
) -> list[StageCost]:
    """The split whose worst memory / cap ratio is smallest (for the error message)."""
    n, S = table.n, len(devices)
    best: list[list[float]] = [[INF] * (n + 1) for _ in range(S + 1)]
    choice: list[list[tuple[int, StageCost] | None]] = [[None] * (n + 1) for _ in range(S + 1)]
    best[0][0] = 0.0
    for s in range(1, S + 1):
        cap = devices[s - 1].memory_bytes
        for j in range(s, n - (S - s) + 1):
            for i in range(s - 1, j):
                cost = stage_cost(table, i, j, s - 1, devices, microbatches, schedule, bandwidth, recompute)
                ratio = 0.0 if cap is None else cost.memory_bytes / max(cap, 1)
                value = max(best[s - 1][i], ratio)
                if value < best[s][j]:
                    best[s][j], choice[s][j] = value, (i, cost)
    out: list[StageCost] = []
    j = n
    for s in range(S, 0, -1):
        picked = choice[s][j]
        assert picked is not None
        out.append(picked[1])
        j = picked[0]
    return out[::-1]


def _no_fit_message(
    table: CostTable, devices: list[Device], microbatches: int, schedule: Schedule, bandwidth: float,
    allow_recompute: bool,
) -> str:
    stages = _least_overloaded(table, devices, microbatches, schedule, bandwidth, allow_recompute)
    lines = []
    for s, cost in enumerate(stages):
        cap = devices[s].memory_bytes
        if cap is not None and cost.memory_bytes > cap:
            lines.append(
                f"stage {s} (layers[{cost.start}]..layers[{cost.stop - 1}] on {devices[s].name}) needs "
                f"{format_bytes(cost.memory_bytes)} against its cap of {format_bytes(cap)}"
            )
    hint = "fewer micro-batches in flight (--schedule 1f1b), " if schedule == "gpipe" else ""
    hint += "a smaller batch, more stages or more memory"
    if not allow_recompute:
        hint += ", or allow activation recomputation (--recompute)"
    recompute = " even with recomputation" if allow_recompute else ""
    return (f"no split into {len(devices)} stages fits the memory caps{recompute} ({schedule}, "
            f"{microbatches} micro-batches); the closest split still overflows:\n  " + "\n  ".join(lines)
            + f"\n  try {hint}")


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_bytes(text: str, where: str = "size") -> int:
    """'24GiB', '512MB', '1e9' -> bytes; a PlanError names `where` on nonsense."""
    raw = text.strip().lower().replace(" ", "")
    num = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or not math.isfinite(value) or value <= 0:
        raise PlanError(f"{where}: cannot read {text!r} as a size; write e.g. 24GiB, 16GB or 512MiB")
    return int(value * _UNITS[unit])


def format_bytes(n: float) -> str:
    """Bytes in binary units, 3 significant digits."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"
