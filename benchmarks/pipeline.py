"""Pipelined training throughput against one process (`make bench-pipeline`; results in docs/benchmarks.md).

The 2020 table's shape: images/s by batch size x micro-batch count, for a cifar10_conv-like spec split
into the 2 stages `softspike.pipelines.planning.planner` chooses, on 2 processes (torch.distributed.pipelining,
gloo, one thread each), against the same spec in one process (one and two threads). Beside it, per
stage: the plan's predicted fwd+bwd time and memory against the ones each stage measures in its own
process (`pipelines.costs`, the rule the plan predicts with; thread-CPU clock), and the stages' memory
against one process holding the whole network.

    python benchmarks/pipeline.py [--channels 32] [--T 4] [--batches 8,16,32] [--micro 1,2,4] [--steps 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch


def scaled_cifar10_conv(width: int = 32, T: int = 4) -> Any:
    """The zoo's cifar10_conv with `width` channels instead of 256 and T steps (CPU-sized: the zoo's
    network is minutes per step here); also the workload of tests/test_pipeline_plan_cli.py."""
    from softspike.models.load import check_spec, load_spec

    data: dict[str, Any] = load_spec("cifar10_conv").to_json()
    data["name"], data["T"] = f"cifar10_conv_w{width}", T
    for layer in data["layers"]:
        if layer["type"] == "conv2d":
            layer["out_channels"] = width
    return check_spec(data, f"cifar10_conv scaled to width {width}")


def bench_spec(channels: int, T: int) -> Any:
    return scaled_cifar10_conv(channels, T)


def plan_for(args: argparse.Namespace, b: int, m: int) -> Any:
    """The planner's 2-stage 1F1B plan at batch b, m micro-batches (profiled one-threaded, thread-CPU clock)."""
    from softspike.pipelines.planning.planner import make_plan
    from softspike.pipelines.planning.profile import profile_spec

    checked = bench_spec(args.channels, args.T)
    prof = profile_spec(checked, b // m, repeats=5, clock="thread")
    return make_plan(checked, ["cpu", "cpu"], b, m, "1f1b", profile=prof).plan


def _step_time(step: Any, steps: int) -> float:
    step()  # warm-up: allocations, kernel selection
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def worker(args: argparse.Namespace) -> None:
    """One of the 2 pipeline processes: every (batch, micro-batches) configuration in one launch."""
    import torch.distributed as dist

    from softspike.models.builder import build
    from softspike.pipelines.costs import in_flight, measure_stage, stage_input
    from softspike.pipelines.running.stages import Layout, PipelineRuntime

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=600))
    rank = dist.get_rank()
    checked = bench_spec(args.channels, args.T)
    rows = []
    for b in args.batches:
        for m in args.micro:
            if b % m:
                continue
            box = [plan_for(args, b, m) if rank == 0 else None]
            dist.broadcast_object_list(box, src=0)  # both processes run rank 0's plan
            plan = box[0]
            torch.manual_seed(0)
            net = build(checked)
            layout = Layout(tuple((s.start, s.stop) for s in plan.stages), "1f1b", m)
            rt = PipelineRuntime(net, checked, layout, rank, torch.device("cpu"), "cross_entropy", None, None, b)
            opt = torch.optim.Adam(rt.module.parameters(), lr=1e-3)
            x, y = torch.rand(b, 3, 32, 32), torch.randint(0, 10, (b,))

            def step() -> None:
                rt.train_step(x if rt.is_first else None, y if rt.is_last else None)  # noqa: B023
                opt.step()  # noqa: B023
                opt.zero_grad(set_to_none=True)  # noqa: B023

            seconds = _step_time(step, args.steps)
            start = layout.stages[rt.stage_index][0]
            cpu = torch.device("cpu")
            make_input = (stage_input((b // m, 3, 32, 32), cpu, rt.encode) if rt.is_first
                          else stage_input((args.T, b // m, *_shapes(checked)[start]), cpu))
            held = in_flight(rt.schedule_name, rt.stage_index, 2, m)
            cost = measure_stage(rt.module, make_input, cpu, opt, held)
            predicted = plan.stages[rt.stage_index]
            rows.append({"batch": b, "microbatches": m, "schedule": rt.schedule_name, "stage": rt.stage_index,
                         "blocks": [predicted.start, predicted.stop],
                         "predicted_time_ms": predicted.predicted_time_ms,
                         "predicted_memory_bytes": predicted.predicted_memory_bytes,
                         "step_s": seconds, "measured_time_ms": cost["time_ms"],
                         "measured_memory_bytes": cost["memory_bytes"]})
            dist.barrier()
    out: list[Any] = [None, None]
    dist.all_gather_object(out, rows)
    if rank == 0:
        Path(args.worker).write_text(json.dumps(out[0] + out[1]))
    dist.destroy_process_group()


def _shapes(checked: Any) -> list[tuple[int, ...]]:
    from softspike.pipelines.running.stages import block_shapes

    return block_shapes(checked)


def single_process(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The whole spec in this process, all the pipeline's cores (2 threads), same batches and optimizer."""
    from softspike.models.builder import build
    from softspike.pipelines.costs import measure_stage, stage_input
    from softspike.pipelines.running.stages import StageBlocks
    from softspike.train.recipe import rate_loss

    checked = bench_spec(args.channels, args.T)
    rows = []
    for b, threads in ((b, t) for b in args.batches for t in (1, 2)):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        net = build(checked)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        x, y = torch.rand(b, 3, 32, 32), torch.randint(0, 10, (b,))

        def step() -> None:
            loss = rate_loss(net.spikes(x).mean(0), y, "cross_entropy")  # noqa: B023
            loss.backward()
            opt.step()  # noqa: B023
            opt.zero_grad(set_to_none=True)  # noqa: B023

        seconds = _step_time(step, args.steps)
        whole = StageBlocks(net.body, 0, len(net.body))
        encode = lambda x: net.encoder.encode(x, args.T)  # noqa: B023, E731 (called at once)
        cost = measure_stage(whole, stage_input((b, 3, 32, 32), torch.device("cpu"), encode), torch.device("cpu"), opt)
        rows.append({"batch": b, "threads": threads, "step_s": seconds, "memory_bytes": cost["memory_bytes"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=[8, 16, 32])
    p.add_argument("--micro", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    tmp = Path(args.out).with_suffix(".workers.json")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__,
           "--channels", str(args.channels), "--T", str(args.T), "--batches", ",".join(map(str, args.batches)),
           "--micro", ",".join(map(str, args.micro)), "--steps", str(args.steps), "--worker", str(tmp)]
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=3600)
    pipe = json.loads(tmp.read_text())
    tmp.unlink()
    one = single_process(args)
    report(args, pipe, one)


def report(args: argparse.Namespace, pipe: list[dict[str, Any]], one: list[dict[str, Any]]) -> None:
    spec = bench_spec(args.channels, args.T)
    print(f"### {spec.spec.name} (cifar10_conv with {args.channels} channels, T={args.T}), 2 planned stages on "
          "2 processes vs one process, images/s (Adam step included)\n")
    print("| batch | one process, 1 thread | one process, 2 threads | "
          + " | ".join(f"pipeline M={m}" for m in args.micro) + " |")
    print("|---|---|---|" + "---|" * len(args.micro))
    table: dict[str, Any] = {"spec": spec.spec.name, "channels": args.channels, "T": args.T, "rows": []}
    for b in args.batches:
        cells = []
        for m in args.micro:
            steps = [r["step_s"] for r in pipe if r["batch"] == b and r["microbatches"] == m]
            cells.append(f"{b / max(steps):.1f}" if steps else "-")
        singles = [f"{b / s['step_s']:.1f}" for s in one if s["batch"] == b]
        print(f"| {b} | " + " | ".join(singles + cells) + " |")
    print("\n### Per stage: predicted vs measured fwd+bwd per micro-batch, memory vs one process\n")
    print("| batch | M | stage (blocks) | predicted ms | measured ms | predicted memory | measured memory "
          "| one process memory |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(pipe, key=lambda r: (r["batch"], r["microbatches"], r["stage"])):
        single = next(s for s in one if s["batch"] == r["batch"] and s["threads"] == 1)
        pt, pm = f"{r['predicted_time_ms']:.1f}", f"{r['predicted_memory_bytes'] / 2**20:.1f} MiB"
        print(f"| {r['batch']} | {r['microbatches']} | {r['stage']} {r['blocks']} | {pt} | {r['measured_time_ms']:.1f} "
              f"| {pm} | {r['measured_memory_bytes'] / 2**20:.1f} MiB | {single['memory_bytes'] / 2**20:.1f} MiB |")
    table["rows"], table["single"] = pipe, one
    table["load_average"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(table, indent=1))
    print(f"\n(load average during the run: {', '.join(f'{v:.1f}' for v in os.getloadavg())}; {args.out})")


if __name__ == "__main__":
    main()
