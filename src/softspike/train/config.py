"""Training options, checked once by pydantic before any work starts."""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from softspike.core.errors import ParameterError
from softspike.core.params import format_validation_error

#: Options a resumed run must share with the run it continues (others, like epochs, may change).
FIXED_ON_RESUME = (
    "dataset", "batch_size", "lr", "optimizer", "loss", "schedule", "weight_decay", "seed", "train_subset",
    "augment_shift",
)


# Bounds that keep every option inside what torch, numpy and float32 can hold (a learning rate of
# 1e300 overflows inside the optimizer, a seed past 2**32 in numpy's seeding): the command line's
# option types are derived from these same fields (cli/options.py).
MAX_COUNT = 10**9
MAX_RATE = 1e3
MAX_SEED = 2**32 - 1
#: Device kinds training runs on (`meta` holds no data; others need a backend extension).
DEVICE_RE = re.compile(r"(cpu|cuda|mps|xpu)(:[0-9]{1,4})?")


def check_device(name: str) -> str:
    """`name` if it names a device kind softspike trains on, else ValueError saying which do."""
    if not isinstance(name, str) or not DEVICE_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a device softspike runs on; give cpu, cuda, cuda:N, mps or xpu")
    return name


class TrainConfig(BaseModel):
    """How to train: data, optimisation, schedule, seed and where to run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, use_attribute_docstrings=True)

    dataset: str = "mnist"
    """mnist, mnist_mini (embedded), fashion_mnist, cifar10, npz:PATH, or tonic:NAME[,options]."""
    data_root: str = "data"
    download: bool = False
    epochs: int = Field(default=1, ge=1, le=MAX_COUNT)
    batch_size: int = Field(default=128, ge=1, le=MAX_COUNT)
    test_batch_size: int = Field(default=1000, ge=1, le=MAX_COUNT)
    lr: float = Field(default=1e-3, gt=0, le=MAX_RATE)
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = Field(default=0.0, ge=0, le=MAX_RATE)
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    """cross_entropy on the readout (rates times the readout scale), or mse of the rates to one-hot."""
    schedule: Literal["constant", "cosine"] = "constant"
    """Learning rate: constant, or cosine decay to 0 over all steps."""
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    device: str = "cpu"
    """cpu, cuda, cuda:N, mps or xpu."""
    checkpoint_every: int = Field(default=0, ge=0, le=MAX_COUNT)
    """Also checkpoint every N training steps within an epoch (0: at epoch ends only)."""
    train_subset: int = Field(default=0, ge=0, le=MAX_COUNT)
    """Train on the first N training samples only (0: all)."""
    augment_shift: int = Field(default=0, ge=0, le=8)
    """Shift training images by up to this many pixels at random (0: off)."""
    progress: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return check_device(value)


def _absolute_paths(options: dict[str, Any]) -> dict[str, Any]:
    # Stored in checkpoints and used from wherever `evaluate` runs: a relative path would move with it.
    out = dict(options)
    if isinstance(out.get("dataset"), str) and out["dataset"].startswith("npz:") and out["dataset"][4:]:
        out["dataset"] = "npz:" + os.path.abspath(os.path.expanduser(out["dataset"][4:]))
    if isinstance(out.get("data_root"), str) and out["data_root"]:
        out["data_root"] = os.path.abspath(os.path.expanduser(out["data_root"]))
    return out


def make_config(options: dict[str, Any], stored: dict[str, Any] | None = None) -> TrainConfig:
    """A config from given options (None = not given) over a resumed run's stored config.

    A resumed run keeps the stored values of FIXED_ON_RESUME; giving a different one is an error."""
    given = _absolute_paths({k: v for k, v in options.items() if v is not None})
    stored = _absolute_paths(stored) if stored is not None else None
    merged = dict(stored or {})
    if stored is not None:
        clash = [f"{k} (checkpoint: {stored[k]!r}, given: {given[k]!r})" for k in FIXED_ON_RESUME
                 if k in given and k in stored and given[k] != stored[k]]
        if clash:
            raise ParameterError(
                "--resume continues a run with its own settings; these differ: " + "; ".join(clash)
                + ". Leave them out, or start a new run in another --checkpoint directory."
            )
    merged.update(given)
    merged.setdefault("data_root", os.path.abspath(TrainConfig.model_fields["data_root"].default))
    try:
        return TrainConfig(**merged)
    except ValidationError as err:
        lines = []
        for line in format_validation_error(err):
            name, _, reason = line.partition(":")
            lines.append(f"--{name.replace('_', '-')}:{reason}")
        raise ParameterError("invalid training options:\n  " + "\n  ".join(lines)) from None
