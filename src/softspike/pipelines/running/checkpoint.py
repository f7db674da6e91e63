"""Checkpoints of a multi-process run: one file per process, and a marker naming the last complete set.

Every process writes its own file (its stage's weights, optimizer, scheduler, random states and log)
into `DIR/step-NNNNNNNN/`, atomically. Only when all of them are on disk (a barrier over every process)
does rank 0 replace the marker `DIR/distributed.json` (atomically too) and delete older step folders.
A process killed at any moment therefore leaves the marker pointing at the previous complete set, and
`--resume` continues from there: each process reads the file of its own (stage, replica).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch.distributed as dist

from softspike.pipelines.running.stages import Layout
from softspike.train.checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from softspike.train.recipe import MARKER, MARKER_FORMAT, read_marker, stage_file


def layout_record(layout: Layout, mode: str) -> dict[str, Any]:
    return {"mode": mode, "stages": [list(s) for s in layout.stages], "data_parallel": layout.data_parallel}


def save_distributed(folder: Path, step_id: int, layout: Layout, mode: str, stage: int, replica: int,
                     state: dict[str, Any]) -> None:
    """Every process calls this at the same step (it holds a barrier)."""
    step_dir = folder / f"step-{step_id:08d}"
    if step_dir.is_symlink():  # planted: the stage files would land in whatever folder it names
        raise CheckpointError(f"{step_dir} is a symbolic link; softspike never writes through one: remove it")
    save_checkpoint(step_dir / stage_file(stage, replica), state)
    dist.barrier()
    if dist.get_rank() == 0:
        marker = {"format": MARKER_FORMAT, "step_dir": step_dir.name, **layout_record(layout, mode)}
        text = json.dumps(marker, indent=1).encode()
        atomic_write(folder / MARKER, lambda f: f.write(text))
        for old in folder.glob("step-*"):
            if old.is_dir() and old.name != step_dir.name:
                shutil.rmtree(old, ignore_errors=True)


def load_distributed(folder: Path, layout: Layout, mode: str, stage: int, replica: int) -> dict[str, Any]:
    """This process's state from the last complete checkpoint of `folder`; a different layout is refused."""
    marker_path = folder / MARKER
    if not marker_path.is_file():
        hint = " (it holds a single-process checkpoint: resume it without --pipeline/--ddp)" if (
            folder / "last.pt").is_file() else ""
        raise CheckpointError(f"no complete multi-process checkpoint in {folder}: {MARKER} is missing{hint}")
    marker = read_marker(folder)
    step_dir = folder / str(marker["step_dir"])
    want = layout_record(layout, mode)
    have = {k: marker.get(k) for k in want}
    if have != want:
        raise CheckpointError(
            f"{folder} was written by a run with layout {have}, this run has {want}; resume with the same "
            "--pipeline plan (and --ddp / process count), or use another --checkpoint directory"
        )
    return load_checkpoint(step_dir / stage_file(stage, replica))
