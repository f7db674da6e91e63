"""The partitioner: exact (against brute force on random cost tables), memory caps, clear errors."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softspike.pipelines.planning.document import PlanError
from softspike.pipelines.planning.partition import (
    CostTable,
    Device,
    parse_bytes,
    partition,
    pipeline_step,
    stage_cost,
)


def brute_force(table: CostTable, devices: list[Device], m: int, schedule: str, bw: float,
                recompute: bool) -> float:
    """Best bottleneck over every contiguous split and every recompute choice (inf: none fits)."""
    n, S = table.n, len(devices)
    best = math.inf
    for cuts in itertools.combinations(range(1, n), S - 1):
        bounds = [0, *cuts, n]
        for flags in itertools.product([False, True] if recompute else [False], repeat=S):
            worst = 0.0
            for s in range(S):
                c = stage_cost(table, bounds[s], bounds[s + 1], s, devices, m, schedule, bw,  # type: ignore[arg-type]
                               flags[s])
                cap = devices[s].memory_bytes
                if cap is not None and c.memory_bytes > cap:
                    worst = math.inf
                    break
                worst = max(worst, c.time_ms)
            best = min(best, worst)
    return best


@st.composite
def problems(draw: st.DrawFn) -> tuple[CostTable, list[Device], int, str, float, bool]:
    n = draw(st.integers(1, 7))
    S = draw(st.integers(1, min(n, 4)))
    ints = st.integers(0, 100)
    times = draw(st.lists(st.floats(0.1, 10.0), min_size=n, max_size=n))
    fwd = [t * draw(st.floats(0.1, 0.9)) for t in times]
    table = CostTable(times, fwd, draw(st.lists(ints, min_size=n, max_size=n)),
                      draw(st.lists(ints, min_size=n, max_size=n)), draw(st.lists(ints, min_size=n, max_size=n)),
                      draw(st.lists(ints, min_size=n, max_size=n)), draw(ints))
    devices = [Device(f"d{s}", draw(st.none() | st.integers(50, 1500)), draw(st.sampled_from([0.5, 1.0, 2.0])))
               for s in range(S)]
    return (table, devices, draw(st.integers(1, 6)), draw(st.sampled_from(["gpipe", "1f1b"])),
            draw(st.sampled_from([math.inf, 100.0, 1000.0])), draw(st.booleans()))


@given(problems())
def test_partition_is_optimal(problem: tuple[CostTable, list[Device], int, str, float, bool]) -> None:
    table, devices, m, schedule, bw, recompute = problem
    expected = brute_force(table, devices, m, schedule, bw, recompute)
    if expected == math.inf:
        with pytest.raises(PlanError, match=r"needs .* against its cap"):
            partition(table, devices, m, schedule, bw, recompute)  # type: ignore[arg-type]
        return
    got = partition(table, devices, m, schedule, bw, recompute)  # type: ignore[arg-type]
    assert got.bottleneck_ms == pytest.approx(expected)
    # A valid split: contiguous, covering, each stage within its cap.
    assert [s.start for s in got.stages] == [0, *[s.stop for s in got.stages[:-1]]]
    assert got.stages[-1].stop == table.n
    for stage, dev in zip(got.stages, devices, strict=True):
        assert dev.memory_bytes is None or stage.memory_bytes <= dev.memory_bytes
        assert recompute or not stage.recompute


def _table(n: int) -> CostTable:
    return CostTable([1.0] * n, [0.4] * n, [10] * n, [100] * n, [0] * n, [50] * n, 50)


def test_in_flight_counts_follow_the_schedule() -> None:
    table, devices = _table(4), [Device("a"), Device("b")]
    gpipe = stage_cost(table, 0, 2, 0, devices, 8, "gpipe", math.inf, False)
    one_f = stage_cost(table, 0, 2, 0, devices, 8, "1f1b", math.inf, False)
    last = stage_cost(table, 2, 4, 1, devices, 8, "1f1b", math.inf, False)
    # state 20; in flight x (input 50 + activations 200): GPipe holds all 8, 1F1B S - s = 2 and 1
    assert (gpipe.memory_bytes, one_f.memory_bytes, last.memory_bytes) == (20 + 8 * 250, 20 + 2 * 250, 20 + 250)
    re = stage_cost(table, 0, 2, 0, devices, 8, "gpipe", math.inf, True)
    assert re.memory_bytes == 20 + 8 * 50 + 200 and re.time_ms == pytest.approx(2.8)


def test_recompute_makes_it_fit_and_costs_time() -> None:
    table = _table(4)
    devices = [Device("a", 700), Device("b", 700)]
    with pytest.raises(PlanError, match=r"stage 0 \(layers\[0\]..layers\[1\] on a\) needs 1.97 KiB") as err:
        partition(table, devices, 8, "gpipe")
    assert "--recompute" in str(err.value)
    got = partition(table, devices, 8, "gpipe", allow_recompute=True)
    assert [s.recompute for s in got.stages] == [True, True]
    assert got.bottleneck_ms == pytest.approx(2.8)


def test_slow_device_gets_fewer_blocks_and_bandwidth_counts() -> None:
    table = _table(6)
    got = partition(table, [Device("fast", speed=2.0), Device("slow", speed=1.0)], 4)
    assert [(s.start, s.stop) for s in got.stages] == [(0, 4), (4, 6)]
    slow_link = partition(table, [Device("a"), Device("b")], 4, bandwidth_bytes_per_s=1000.0)
    assert slow_link.stages[0].time_ms == pytest.approx(3.0 + 50 / 1000 * 1e3)


def test_bubble_and_errors() -> None:
    step, bubble = pipeline_step([1.0, 1.0], 4)
    assert step == 5.0 and bubble == pytest.approx(1 - 8 / 10)
    with pytest.raises(PlanError, match="at most 2 stages"):
        partition(_table(2), [Device("a")] * 3, 1)
    assert parse_bytes("24GiB") == 24 * 1024**3 and parse_bytes("1.5 GB") == 1_500_000_000
    with pytest.raises(PlanError, match="--memory: cannot read '24 parsecs'"):
        parse_bytes("24 parsecs", "--memory")
