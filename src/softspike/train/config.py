"""Training options, checked once by pydantic before any work starts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from softspike.core.errors import ParameterError
from softspike.core.params import format_validation_error

#: Options a resumed run must share with the run it continues (others, like epochs, may change).
FIXED_ON_RESUME = (
    "dataset", "batch_size", "lr", "optimizer", "loss", "schedule", "weight_decay", "seed", "train_subset",
    "augment_shift",
)


class TrainConfig(BaseModel):
    """How to train: data, optimisation, schedule, seed and where to run."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, use_attribute_docstrings=True)

    dataset: str = "mnist"
    """mnist, mnist_mini (embedded), fashion_mnist, cifar10, npz:PATH, or tonic:NAME[,options]."""
    data_root: str = "data"
    download: bool = False
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=128, ge=1)
    test_batch_size: int = Field(default=1000, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = Field(default=0.0, ge=0)
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    """cross_entropy on the readout (rates times the readout scale), or mse of the rates to one-hot."""
    schedule: Literal["constant", "cosine"] = "constant"
    """Learning rate: constant, or cosine decay to 0 over all steps."""
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = Field(default=0, ge=0)
    """Also checkpoint every N training steps within an epoch (0: at epoch ends only)."""
    train_subset: int = Field(default=0, ge=0)
    """Train on the first N training samples only (0: all)."""
    augment_shift: int = Field(default=0, ge=0, le=8)
    """Shift training images by up to this many pixels at random (0: off)."""
    progress: bool = True


def make_config(options: dict[str, Any], stored: dict[str, Any] | None = None) -> TrainConfig:
    """A config from given options (None = not given) over a resumed run's stored config.

    A resumed run keeps the stored values of FIXED_ON_RESUME; giving a different one is an error."""
    given = {k: v for k, v in options.items() if v is not None}
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
    try:
        return TrainConfig(**merged)
    except ValidationError as err:
        lines = []
        for line in format_validation_error(err):
            name, _, reason = line.partition(":")
            lines.append(f"--{name.replace('_', '-')}:{reason}")
        raise ParameterError("invalid training options:\n  " + "\n  ".join(lines)) from None
