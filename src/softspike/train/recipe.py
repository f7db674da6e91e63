"""What a training run is, whichever engine runs it: one process (`train.loop`) or several
(`pipelines.running.worker`). Both import this module; it imports neither, so dependencies point down.

- the loss on a readout, and a (micro-)batch's share of the batch's mean loss;
- the optimizer and learning-rate schedule a config names;
- the shuffle of an epoch, a function of (seed, epoch) only;
- the random stream of evaluation, apart from training's;
- the data a config names;
- the spec's identity in a checkpoint (its text) and what differs from another;
- the marker of a multi-process checkpoint, and its stage files merged into one network's checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from softspike.models.load import CheckedSpec
from softspike.models.network import SpikingNetwork
from softspike.train.checkpoint import CheckpointError, load_checkpoint
from softspike.train.config import TrainConfig, check_device
from softspike.train.data import ArraySplit, Dataset, DatasetError, load_dataset


def rate_loss(rates: Tensor, y: Tensor, loss: str, scale: float = 1.0, reduction: str = "mean") -> Tensor:
    """cross_entropy on rates × `scale` (scale 1: the 2020 loss), or mse of rates to one-hot.

    `reduction="sum"` sums over samples (and, for mse, classes): pipelines and data parallel divide
    that sum by the whole batch themselves, so that any split of the batch gives the same gradient."""
    if loss == "mse":
        return F.mse_loss(rates, F.one_hot(y, rates.shape[1]).to(rates.dtype), reduction=reduction)
    return F.cross_entropy(rates * scale, y, reduction=reduction)


def readout_loss(net: SpikingNetwork, rates: Tensor, y: Tensor, loss: str) -> Tensor:
    """The mean loss of a batch on the network's readout (see `rate_loss`)."""
    return rate_loss(rates, y, loss, net.readout_scale)


def batch_loss(spikes: Tensor, y: Tensor, kind: str, scale: float, batch: int) -> Tensor:
    """The loss of a (micro-)batch's output spikes [T, b, classes] as its share of the mean over `batch`
    samples: summed over its samples, divided by the whole batch (and by the classes for mse, as mse's
    mean does), so the shares of any split add up to the whole batch's mean loss."""
    norm = batch * (spikes.shape[-1] if kind == "mse" else 1)
    return rate_loss(spikes.mean(0), y, kind, scale, reduction="sum") / norm


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(cfg.epochs * steps_per_epoch, 1)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)))
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)


def epoch_order(seed: int, epoch: int, n: int) -> Tensor:
    """The shuffle of one epoch, a function of (seed, epoch) only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


@contextlib.contextmanager
def evaluation_random(seed: int, epoch: int, device: torch.device) -> Iterator[None]:
    """Evaluation draws (a Poisson encoder's seeds) from a stream of its own, seeded by (seed, epoch), and
    leaves training's stream where it was. Without this, an evaluation in batches of 1000 (one process)
    and one in the pipeline's batches consumed different amounts of the training stream, and the runs'
    later epochs drew different spikes."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed * 1_000_003 + epoch + 500_009)
        yield


def evaluation_chunks(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of the batches one process evaluates a split of `n` samples in."""
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def prepare_data(cfg: TrainConfig, checked: CheckedSpec, max_memory: int | None = None) -> Dataset:
    data = load_dataset(cfg.dataset, cfg.data_root, cfg.download, checked.spec.T, max_memory)
    if cfg.train_subset:
        keep = slice(0, cfg.train_subset)
        data = Dataset(data.name, ArraySplit(data.train.x[keep], data.train.y[keep]), data.test)
    data.check_fits(checked.spec.input_shape, checked.num_classes, checked.spec.name)
    if len(data.train) == 0:
        raise DatasetError(f"dataset {data.name!r} has no training samples")
    return data


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(check_device(name))
        torch.empty(0, device=device)
    except (RuntimeError, ValueError) as err:
        raise DatasetError(f"--device {name!r} is not usable here: {str(err).splitlines()[0]}") from None
    return device


def spec_text(checked: CheckedSpec) -> str:
    """The spec as a checkpoint stores it (canonical JSON: keys sorted)."""
    return json.dumps(checked.to_json(), sort_keys=True)


def spec_difference(stored: Any, given: Any, path: str = "") -> list[str]:
    """Where two spec JSON values differ, as `path: checkpoint X, given Y` lines (first ones first)."""
    if isinstance(stored, dict) and isinstance(given, dict):
        out = []
        for key in sorted(set(stored) | set(given), key=str):
            where = f"{path}.{key}" if path else str(key)
            out += spec_difference(stored.get(key, "<absent>"), given.get(key, "<absent>"), where)
        return out
    if isinstance(stored, list) and isinstance(given, list) and len(stored) == len(given):
        return [line for i, (a, b) in enumerate(zip(stored, given)) for line in spec_difference(a, b, f"{path}[{i}]")]
    if isinstance(stored, list) and isinstance(given, list):
        return [f"{path}: checkpoint has {len(stored)} entries, given {len(given)}"]
    if stored == given:
        return []
    return [f"{path or '<root>'}: checkpoint {json.dumps(stored)}, given {json.dumps(given)}"]


def check_same_spec(state: dict[str, Any], checked: CheckedSpec, path: Path) -> None:
    """Refuse to resume a checkpoint made with another spec, naming the first differences."""
    if state.get("spec") != spec_text(checked):
        stored = json.loads(state.get("spec") or "{}")
        diff = "; ".join(spec_difference(stored, checked.to_json())[:3])
        raise CheckpointError(
            f"{path} was made with a different spec (network {stored.get('name', '?')!r}) than {checked.source} "
            f"({diff}); give the spec it was trained with, or use another --checkpoint directory"
        )


#: The marker of a multi-process checkpoint directory: it names the last complete set of stage files.
MARKER = "distributed.json"
MARKER_FORMAT = "softspike-distributed-checkpoint/1"


def stage_file(stage: int, replica: int) -> str:
    """The file one process of a multi-process run writes into a step folder."""
    return f"stage{stage}-replica{replica}.pt"


def read_marker(folder: Path) -> dict[str, Any]:
    """The marker of `folder`: {"step_dir": ..., "stages": [[start, stop], ...], ...}."""
    marker_path = folder / MARKER
    try:
        marker = json.loads(marker_path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{marker_path}: unreadable ({err})") from None
    if not isinstance(marker, dict) or not isinstance(marker.get("step_dir"), str) or not isinstance(
            marker.get("stages"), list):
        raise CheckpointError(f"{marker_path}: unreadable (not a marker with step_dir and stages)")
    return marker


def merged_checkpoint(folder: Path) -> dict[str, Any]:
    """The last complete multi-process checkpoint of `folder` as one network's checkpoint (replica 0 of every
    stage; their keys are already the whole network's), e.g. for `softspike evaluate`."""
    marker = read_marker(folder)
    step_dir = folder / str(marker["step_dir"])
    parts = [load_checkpoint(step_dir / stage_file(stage, 0)) for stage in range(len(marker["stages"]))]
    merged = dict(parts[-1])  # the last stage's log is the one that saw the loss
    merged["model"] = {k: v for part in parts for k, v in part["model"].items()}
    return merged
