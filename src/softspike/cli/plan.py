"""`softspike plan SPEC`: profile a spec, split it into pipeline stages, print and write the plan."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from softspike.cli.options import int_option, int_range
from softspike.core.errors import SoftspikeError
from softspike.models.load import load_spec
from softspike.pipelines.planning.document import PipelinePlan, PlanError
from softspike.pipelines.planning.partition import format_bytes, parse_bytes
from softspike.pipelines.planning.planner import default_devices, make_plan


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "plan", help="split a spec into pipeline stages over devices (for torchrun ... --pipeline plan.json)",
        description="Profile each top-level block of SPEC (time, memory saved for backward, boundary size) "
                    "at the micro-batch size, and split the blocks into contiguous stages that minimise the "
                    "slowest stage under the devices' memory caps.",
    )
    p.add_argument("spec", metavar="SPEC", help="a spec file or a zoo name")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--devices", metavar="LIST", help="one stage per device, e.g. cuda:0,cuda:1 or cpu,cpu")
    where.add_argument("--stages", type=int_range(1, 4096, "stages"), metavar="N",
                       help="N stages on the first N GPUs, or on the CPU")
    p.add_argument("--batch-size", type=int_option("batch_size"), required=True, metavar="B",
                   help="global batch per optimizer step")
    p.add_argument("--microbatches", type=int_range(1, name="microbatches"), required=True, metavar="M",
                   help="micro-batches per step")
    p.add_argument("--data-parallel", type=int_range(1, 65536, "data_parallel"), default=1, metavar="R",
                   help="replicas of the pipeline (pipeline x DDP: R x stages processes; default 1)")
    p.add_argument("--schedule", choices=["gpipe", "1f1b"], default="1f1b", help="pipeline schedule (default 1f1b)")
    p.add_argument("--memory", metavar="SIZE[,SIZE...]",
                   help="memory cap per device, e.g. 24GiB or 24GiB,16GiB (default: the GPU's memory, else none)")
    p.add_argument("--speed", metavar="X[,X...]", help="relative speed per device (default 1 each)")
    p.add_argument("--bandwidth", default="inf", metavar="SIZE",
                   help="link bytes per second between stages, e.g. 10GB (default: free transfers)")
    p.add_argument("--recompute", action="store_true",
                   help="let a stage recompute its activations in backward when that makes it fit")
    p.add_argument("--T", type=int_range(1, name="T"), metavar="T", help="time steps (default: the spec's T)")
    p.add_argument("--repeats", type=int_range(1, 1000, "repeats"), default=3, metavar="R",
                   help="timed runs per block (default 3)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON instead of a table")
    p.add_argument("-o", "--output", metavar="FILE", help="write the plan JSON to FILE")
    p.set_defaults(run=run)


def _per_device(text: str | None, n: int, what: str, parse: Any) -> list[Any] | None:
    if text is None:
        return None
    values = [parse(v) for v in text.split(",")]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise PlanError(f"--{what}: give one value or one per device ({n}), got {len(values)}")
    return values


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise PlanError(f"--speed: {text!r} is not a positive number (relative speed, 1 = as profiled)")
    return value


def _devices(args: argparse.Namespace) -> list[str]:
    if args.devices is not None:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
        if not devices:
            raise PlanError("--devices: give at least one device, e.g. cuda:0,cuda:1")
        import torch

        for d in devices:
            try:
                torch.device(d)
            except (RuntimeError, ValueError):
                raise PlanError(f"--devices: {d!r} is not a device name (cpu, cuda:0, ...)") from None
        return devices
    if args.stages < 1:
        raise PlanError(f"--stages must be >= 1, got {args.stages}")
    return default_devices(args.stages)


def render(plan: PipelinePlan, notes: list[str]) -> str:
    """The plan as a table, with the predicted step, bubble and throughput."""
    mb = plan.batch_size // (plan.microbatches * plan.data_parallel)
    replicas = f" x {plan.data_parallel} replicas ({len(plan.stages) * plan.data_parallel} processes)" \
        if plan.data_parallel > 1 else ""
    lines = [f"plan for {plan.spec_name}: {len(plan.stages)} stages{replicas}, batch {plan.batch_size} = "
             f"{plan.data_parallel * plan.microbatches} micro-batches of {mb}, T = {plan.T}, schedule {plan.schedule}"]
    lines += [f"note: {n}" for n in notes]
    rows = [("stage", "device", "blocks", "time/micro-batch", "memory", "sends")]
    for s in plan.stages:
        blocks = s.blocks[0] if len(s.blocks) == 1 else f"{s.blocks[0]}..{s.blocks[-1]}"
        blocks += " (recompute)" if s.recompute else ""
        sends = format_bytes(s.boundary_bytes) if s.boundary_bytes else "-"
        rows.append((str(s.index), s.device, blocks, f"{s.predicted_time_ms:.2f} ms",
                     format_bytes(s.predicted_memory_bytes), sends))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(f"predicted: step {plan.predicted_step_ms:.1f} ms, bubble {plan.predicted_bubble:.1%}, "
                 f"{plan.predicted_images_per_s:.1f} images/s")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    checked = load_spec(args.spec)
    devices = _devices(args)
    memory = _per_device(args.memory, len(devices), "memory", lambda v: parse_bytes(v, "--memory"))
    speed = _per_device(args.speed, len(devices), "speed", _speed)
    bandwidth = math.inf if args.bandwidth.strip().lower() in ("inf", "none") else parse_bytes(
        args.bandwidth.lower().removesuffix("/s"), "--bandwidth")
    if args.T is not None and args.T < 1:
        raise PlanError(f"--T must be >= 1, got {args.T}")
    result = make_plan(checked, devices, args.batch_size, args.microbatches, args.schedule, memory, speed,
                       bandwidth, args.recompute, args.T, args.repeats, data_parallel=args.data_parallel)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(result.plan.to_json())
        except OSError as err:
            raise SoftspikeError(f"{args.output}: cannot write the plan: {err.strerror or err}") from None
    if args.json:
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        sys.stdout.write(result.plan.to_json())
    else:
        sys.stdout.write(render(result.plan, result.notes))
        if args.output:
            print(f"wrote {args.output}")
    return 0
