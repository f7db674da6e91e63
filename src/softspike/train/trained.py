"""A trained network back from its checkpoint: `softspike.load(path)`, and what `evaluate` and
`predict` build on.

The checkpoint is read with `weights_only`, checked against its schema, its stored spec checked by
the spec language like any spec file, and the weights' names and shapes against the network built
from that spec; any problem is a CheckpointError (or SpecError) naming it, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softspike.models.builder import build
from softspike.models.load import CheckedSpec, check_spec
from softspike.models.network import SpikingNetwork
from softspike.train.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    load_checkpoint,
    load_weights,
    validate_checkpoint,
)
from softspike.train.config import TrainConfig, make_config
from softspike.train.recipe import MARKER, merged_checkpoint, spec_difference


@dataclass(frozen=True)
class Trained:
    """A checkpoint's network (built, weights loaded, eval mode), its checked spec and training options."""

    path: Path
    checked: CheckedSpec
    net: SpikingNetwork
    config: TrainConfig
    state: dict[str, Any]


def checkpoint_path(arg: str | Path) -> Path:
    """A checkpoint file, or the `last.pt` of a checkpoint directory."""
    path = Path(arg)
    return path / CHECKPOINT_FILE if path.is_dir() else path


def read_checkpoint(arg: str | Path) -> tuple[Path, dict[str, Any]]:
    """(path, state) of a checkpoint file or directory; a directory written by several processes
    (`train --pipeline` / `--ddp`) gives its last complete step merged into one network's checkpoint."""
    folder = Path(arg)
    if folder.is_dir():
        if (folder / MARKER).is_file():
            return folder, merged_checkpoint(folder)
    path = checkpoint_path(folder)
    return path, load_checkpoint(path)


def stored_spec(state: dict[str, Any], path: Path) -> CheckedSpec:
    """The spec a (validated) checkpoint was trained with, checked like a spec file."""
    return check_spec(json.loads(state["spec"]), f"{path} (its stored spec)")


def load_trained(path: str | Path, spec: CheckedSpec | None = None) -> Trained:
    """Read, validate and rebuild the network of a checkpoint; `spec`, if given, must equal the stored one."""
    path, state = read_checkpoint(path)
    state = validate_checkpoint(state, path)
    checked = stored_spec(state, path)
    if spec is not None:
        diff = spec_difference(checked.to_json(), spec.to_json())
        if diff:
            shown = diff[:5] + ([f"... and {len(diff) - 5} more"] if len(diff) > 5 else [])
            raise CheckpointError(
                f"{path} was made with a different spec than {spec.source}:\n  " + "\n  ".join(shown)
                + "\n  leave the spec out to use the checkpoint's own"
            )
    try:
        config = make_config({}, json.loads(state["config"]))
    except ValueError as err:
        raise CheckpointError(f"{path}: its stored training options are not valid: {err}") from None
    net = build(checked)
    load_weights(net, state["model"], path)
    return Trained(path, checked, net.eval(), config, state)


def load(path: str | Path) -> SpikingNetwork:
    """The trained network saved in a checkpoint file (or directory), built from its stored spec, in eval mode.

    >>> net = softspike.load("runs/mnist/last.pt")   # doctest: +SKIP
    >>> rates = net.spikes(images).mean(0)            # [batch, classes]
    """
    return load_trained(path).net
