"""`softspike train` on several processes: under torchrun (`--pipeline plan.json`, `--ddp`), or started
here with `--nproc N` through torch's own elastic launcher (the agent torchrun itself runs).

    torchrun --nproc-per-node 2 -m softspike train SPEC --pipeline plan.json ...   # pipeline
    torchrun --nproc-per-node 4 -m softspike train SPEC --pipeline plan.json --ddp # 2 stages x 2 replicas
    torchrun --nproc-per-node 2 -m softspike train SPEC --ddp ...                  # data parallel
    softspike train SPEC --nproc 2 ...      # plans 2 stages (or, with --ddp, 2 replicas) and starts them
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softspike.core.errors import SoftspikeError
from softspike.models.load import CheckedSpec
from softspike.pipelines.running.stages import Layout, LayoutError
from softspike.pipelines.running.worker import distributed_env, prepare_distributed


class ArgumentError(LayoutError):
    """A command line that cannot run as given: found before any process starts work, printed once
    (by rank 0 under torchrun), exit status 2 on every process, as argparse's own errors."""


@dataclass(frozen=True)
class Checked:
    """A multi-process `softspike train` command line, checked: how the processes split the network."""

    layout: Layout
    mode: str
    options: dict[str, Any]
    predictions: list[dict[str, Any]] | None = None


def check_arguments(args: argparse.Namespace, checked: CheckedSpec, options: dict[str, Any],
                    world: int) -> Checked:
    """Every check of a multi-process command line in one place, run where the processes would start
    (by `--nproc`, before it launches them) or by each process torchrun started (before any process group
    or dataset): conflicts between the options, the plan against the spec and the process count, and the
    batch size against replicas x micro-batches. Raises ArgumentError."""
    try:
        return _check_arguments(args, checked, options, world)
    except ArgumentError:
        raise
    except SoftspikeError as err:  # a plan that does not fit, a layout that cannot run
        raise ArgumentError(str(err)) from None


def _check_arguments(args: argparse.Namespace, checked: CheckedSpec, options: dict[str, Any],
                     world: int) -> Checked:
    from softspike.train.config import TrainConfig

    if args.resume and not args.checkpoint:
        raise ArgumentError("--resume needs --checkpoint DIR, the directory of the run to continue")
    n_blocks = len(checked.spec.layers)
    batch = options.get("batch_size")
    if args.pipeline is not None:
        layout, predictions, plan_batch = plan_layout(args.pipeline, checked, world, args.ddp)
        if args.microbatches is not None and args.microbatches != layout.microbatches:
            raise ArgumentError(
                f"--microbatches {args.microbatches} conflicts with the plan {args.pipeline}, which splits each "
                f"batch into {layout.microbatches} micro-batches (its predictions are for that count); leave "
                f"--microbatches out, or make a plan with `softspike plan ... --microbatches {args.microbatches}`"
            )
        if batch is None and not args.resume:
            options = {**options, "batch_size": plan_batch}
        if options.get("device") is None and str(predictions[0]["device"]).startswith("cuda"):
            options = {**options, "device": "cuda"}  # a plan made for GPUs runs on GPUs unless told otherwise
        if not args.resume:  # a resumed run's batch size may come from its checkpoint: checked there
            layout.check(n_blocks, world, options["batch_size"])
        return Checked(layout, "pipeline", options, predictions)
    if args.microbatches is not None and (args.ddp or args.nproc is None):
        raise ArgumentError(
            "--microbatches applies to pipelines: it sets the micro-batch count when --nproc plans the stages "
            "(a --pipeline plan carries its own); data parallel and one process take whole batches"
        )
    if args.ddp:
        layout = Layout(((0, n_blocks),), "gpipe", 1, world)
        if not args.resume:
            layout.check(n_blocks, world, batch or TrainConfig().batch_size)
        return Checked(layout, "ddp", options)
    # --nproc N plans N stages with M micro-batches before it launches.
    if world > n_blocks:
        raise ArgumentError(f"--nproc {world}: the spec has {n_blocks} top-level blocks, so at most {n_blocks} "
                            "pipeline stages; start fewer processes, or add --ddp for data parallel")
    m = args.microbatches or world
    any_split = (*((i, i + 1) for i in range(world - 1)), (world - 1, n_blocks))  # the planner picks the real one
    Layout(any_split, "1f1b", m).check(n_blocks, world, batch or TrainConfig().batch_size)
    return Checked(Layout(((0, n_blocks),)), "plan", options)


def prepare_command(args: argparse.Namespace, checked: CheckedSpec, options: dict[str, Any]) -> Callable[[], int]:
    """What `softspike train` does when --pipeline, --ddp, --nproc or --microbatches is given, in two
    parts. This call checks the command line and, in a process torchrun started, does everything the
    process does before it meets the others: its errors (ArgumentError, or another SoftspikeError) are
    met alike by every process. The callable it returns launches (--nproc) or trains, and returns the
    exit status."""
    if args.nproc is not None:
        check_launch(args, checked, options)
        return lambda: launch(args, checked, options)
    if args.pipeline is None and not args.ddp:  # --microbatches on one process: refused
        check_arguments(args, checked, options, 1)
    try:
        _, world, _ = distributed_env()
    except LayoutError as err:
        raise ArgumentError(str(err)) from None
    run = check_arguments(args, checked, options, world)
    prepared = prepare_distributed(checked, run.options, run.layout, run.mode, args.logdir, args.checkpoint,
                                   args.resume, verbose=not args.quiet, predictions=run.predictions)

    def train() -> int:
        metrics = prepared.run()
        if metrics is not None and metrics["final"]:
            final = metrics["final"]
            print(f"{checked.spec.name}: test accuracy {100 * final['test_accuracy']:.2f}% after {final['epoch']} "
                  f"epochs ({metrics['wall_time_s']:.0f} s, {world} processes, {run.mode})", flush=True)
        return 0

    return train


def plan_layout(path: str, checked: CheckedSpec, world: int, ddp: bool) -> tuple[Layout, list[dict[str, Any]], int]:
    """Read and check a plan (before any process group exists); the layout, its predictions, its batch size.

    With --ddp, the plan's stages are replicated over the processes: world / stages replicas each."""
    from softspike.pipelines.planning.document import check_plan, load_plan

    plan = load_plan(path)
    if ddp and world % len(plan.stages) == 0:
        plan = plan.model_copy(update={"data_parallel": world // len(plan.stages)})
    check_plan(plan, checked, world)
    layout = Layout(tuple((s.start, s.stop) for s in plan.stages), plan.schedule, plan.microbatches,
                    plan.data_parallel, tuple(s.recompute for s in plan.stages))
    return layout, [s.model_dump() for s in plan.stages], plan.batch_size


def _child_argv(args: argparse.Namespace) -> list[str]:
    """The command line of this `softspike train`, without --nproc (what each started process runs)."""
    out: list[str] = []
    for action in args.parser._actions:
        if action.dest in ("help", "nproc", "microbatches"):
            continue
        value = getattr(args, action.dest, None)
        if not action.option_strings:
            out.append(str(value))
        elif isinstance(action, argparse._StoreTrueAction):
            if value:
                out.append(action.option_strings[-1])
        elif value is not None:
            out += [action.option_strings[-1], str(value)]
    return out


def check_launch(args: argparse.Namespace, checked: CheckedSpec, options: dict[str, Any]) -> None:
    """The checks of `--nproc N`: here, once, before any process starts (ArgumentError)."""
    if "TORCHELASTIC_RUN_ID" in os.environ or "RANK" in os.environ:
        raise ArgumentError("--nproc starts the processes itself; under torchrun, leave --nproc out")
    if args.nproc < 1:
        raise ArgumentError(f"--nproc must be >= 1, got {args.nproc}")
    check_arguments(args, checked, options, args.nproc)
    if not args.resume:  # (a resumed run's dataset is in its checkpoint: the processes read it)
        from softspike.train.config import make_config
        from softspike.train.recipe import prepare_data

        prepare_data(make_config(options), checked)  # a missing or unfit dataset: said here, once


def launch(args: argparse.Namespace, checked: CheckedSpec, options: dict[str, Any]) -> int:
    """Plan (unless --pipeline or --ddp says how to split) and start N processes on this machine
    (a command line `check_launch` passed)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    n = args.nproc
    argv = _child_argv(args)
    if args.pipeline is None and not args.ddp:
        path = _write_plan(checked, n, args.microbatches, options, args)
        argv += ["--pipeline", str(path)]
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", run_id=f"softspike-{uuid.uuid4().hex[:8]}", max_restarts=0,
                          monitor_interval=0.1, start_method="spawn")
    # As torchrun does: N processes on the cores of one machine must not each take them all.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    try:
        elastic_launch(config, sys.executable)("-m", "softspike", "train", *argv)
    except ChildFailedError as err:
        failures = "; ".join(f"rank {r}: exit code {f.exitcode}" for r, f in sorted(err.failures.items()))
        raise SoftspikeError(f"{n} processes: {failures} (see their messages above)") from None
    return 0


def _write_plan(checked: CheckedSpec, n: int, microbatches: int | None, options: dict[str, Any],
                args: argparse.Namespace) -> Path:
    from softspike.pipelines.planning.planner import default_devices, make_plan
    from softspike.train.config import TrainConfig

    batch = options.get("batch_size") or TrainConfig().batch_size
    m = microbatches or n
    result = make_plan(checked, default_devices(n), batch, m, "1f1b")
    folder = Path(args.checkpoint or args.logdir or ".")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.json"
    if not (args.resume and path.is_file()):
        from softspike.train.checkpoint import atomic_write

        text = result.plan.to_json().encode()
        atomic_write(path, lambda f: f.write(text))  # a link planted at plan.json is replaced, not written through
    stages = ", ".join(f"[{s.start}, {s.stop})" for s in result.plan.stages)
    print(f"planned {n} stages over blocks {stages}, {m} micro-batches, 1f1b: {path}", flush=True)
    return path


__all__ = ["ArgumentError", "check_arguments", "check_launch", "launch", "plan_layout", "prepare_command"]
