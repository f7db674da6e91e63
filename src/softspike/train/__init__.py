"""Training spec-built networks: datasets, the loop, checkpoints and monitors."""

from softspike.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from softspike.train.data import ArraySplit, Dataset, DatasetError, load_dataset
from softspike.train.loop import TrainConfig, evaluate, fit

__all__ = [
    "ArraySplit", "CheckpointError", "Dataset", "DatasetError", "TrainConfig", "evaluate", "fit", "load_checkpoint",
    "load_dataset", "save_checkpoint",
]
