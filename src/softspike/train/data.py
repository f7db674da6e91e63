"""Datasets as in-memory tensors: MNIST, Fashion-MNIST, CIFAR-10 and a user's own `.npz` arrays.

Images stay in their stored dtype (uint8 for the image sets) and become floats in [0, 1] a batch
at a time. Nothing touches the network unless `download=True`; a missing dataset says how to get it.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from softspike.core.extras import require
from softspike.train.npz import DatasetError, read_npz
from softspike.train.safe_pickle import load_data_pickle

NAMES = ("mnist", "mnist_mini", "fashion_mnist", "cifar10", "npz:PATH", "tonic:NAME")
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class ArraySplit:
    """One split: samples `x` [N, ...] (uint8, scaled by 1/255 per batch, or float) and labels `y` [N]."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, index: Tensor, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        x = self.x[index]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return x.to(device), self.y[index].to(device)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: ArraySplit
    test: ArraySplit

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    def check_fits(self, input_shape: Sequence[int], num_classes: int, spec_name: str) -> None:
        """Raise DatasetError unless the samples have the spec's input shape and labels < classes."""
        if self.sample_shape != tuple(input_shape):
            raise DatasetError(
                f"dataset {self.name!r} has samples of shape {list(self.sample_shape)}, but spec {spec_name!r} "
                f"expects input_shape {list(input_shape)}; change the spec's input_shape or the data"
            )
        if len(self.test) == 0:
            raise DatasetError(f"dataset {self.name!r} has no test samples: an accuracy over 0 samples means nothing")
        for split, part in (("train", self.train), ("test", self.test)):
            if len(part) and int(part.y.min()) < 0:
                raise DatasetError(f"dataset {self.name!r}: {split} label {int(part.y.min())} is negative")
            if len(part) and int(part.y.max()) >= num_classes:
                raise DatasetError(
                    f"dataset {self.name!r}: {split} label {int(part.y.max())} is out of range for spec "
                    f"{spec_name!r}, whose output has {num_classes} classes"
                )


def _torchvision_split(cls: Any, root: Path, train: bool, download: bool) -> ArraySplit:
    ds = cls(str(root), train=train, download=download)
    return ArraySplit(ds.data.unsqueeze(1).contiguous(), ds.targets.long())


def _load_mnist_like(name: str, root: Path, download: bool) -> Dataset:
    torchvision = require("torchvision", "train", f"reading {name}")
    cls = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[name]
    folder = root / cls.__name__ / "raw"
    files = ", ".join(Path(url).name.removesuffix(".gz") for url, _ in cls.resources)
    try:
        train = _torchvision_split(cls, root, True, download)
        return Dataset(name, train, _torchvision_split(cls, root, False, download))
    except RuntimeError as err:
        if download:
            raise DatasetError(f"{name}: download into {root} failed: {err}") from None
        raise DatasetError(
            f"{name}: not found in {folder} (expected {files}); pass --download to fetch it into {root}, "
            f"or put those files in {folder}"
        ) from None
    except OSError as err:
        raise DatasetError(f"{name}: cannot read or fetch it in {root}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:  # torchvision's legacy .pt files
        reason = str(err).splitlines()[0] if str(err) else ""
        raise DatasetError(f"{name}: files in {root / cls.__name__} are damaged or not data "
                           f"({type(err).__name__}: {reason}); remove them and fetch the dataset again") from None


def _read_cifar_batch(path: Path) -> tuple[Tensor, Tensor]:
    try:
        with path.open("rb") as f:
            entry = load_data_pickle(f)  # never pickle.load: a batch file must not run code
        if not isinstance(entry, dict):
            raise TypeError(f"it holds {type(entry).__name__}, not a dict")
        data = np.asarray(entry[b"data"] if b"data" in entry else entry["data"], dtype=np.uint8)
        labels = np.asarray(entry.get(b"labels", entry.get("labels")))
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be a list of integers, got {labels.dtype} of shape {list(labels.shape)}")
        x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
        y = torch.from_numpy(_int64_labels(labels, str(path)))
    except FileNotFoundError:
        raise
    except Exception as err:
        raise DatasetError(f"cifar10: {path} is not a CIFAR-10 batch file ({type(err).__name__}: {err})") from None
    if x.shape[0] != y.shape[0]:
        raise DatasetError(f"cifar10: {path} holds {x.shape[0]} images but {y.shape[0]} labels")
    return x, y


def _load_cifar10(root: Path, download: bool) -> Dataset:
    folder = root / CIFAR_DIR
    wanted = [*CIFAR_TRAIN, CIFAR_TEST]
    if download and not all((folder / n).is_file() for n in wanted):
        torchvision = require("torchvision", "train", "downloading CIFAR-10")
        cifar10 = torchvision.datasets.CIFAR10

        try:  # the archive only, checked by its md5: constructing CIFAR10 would unpickle the batches itself
            torchvision.datasets.utils.download_and_extract_archive(
                cifar10.url, str(root), filename=cifar10.filename, md5=cifar10.tgz_md5
            )
        except (RuntimeError, OSError) as err:
            raise DatasetError(f"cifar10: download into {root} failed: {err}") from None
    missing = [n for n in wanted if not (folder / n).is_file()]
    if missing:
        raise DatasetError(
            f"cifar10: not found in {folder} (missing {', '.join(missing)}); pass --download to fetch it into "
            f"{root}, or unpack cifar-10-python.tar.gz there"
        )
    parts = [_read_cifar_batch(folder / n) for n in CIFAR_TRAIN]
    train = ArraySplit(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    return Dataset("cifar10", train, ArraySplit(*_read_cifar_batch(folder / CIFAR_TEST)))


#: The arrays of an `npz:PATH` dataset.
NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
#: Labels are class indices; anything this large is a corrupt file (and would wrap in int64).
MAX_LABEL = 2**31 - 1


def _int64_labels(y: np.ndarray, where: str) -> np.ndarray:
    """Integer labels as int64, refusing negative or huge ones before the cast could wrap them."""
    if y.size and (int(y.min()) < 0 or int(y.max()) > MAX_LABEL):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DatasetError(f"{where}: label {bad} is out of range: give integer class labels >= 0 "
                           f"(at most {MAX_LABEL})")
    return y.astype(np.int64)


def check_sample_values(x: np.ndarray, where: str) -> None:
    """Samples must be uint8 (0-255) or finite floats that float32 can hold (the network's dtype)."""
    if x.dtype != np.uint8 and not np.issubdtype(x.dtype, np.floating):
        raise DatasetError(f"{where} has dtype {x.dtype}; give uint8 (0-255) or floats")
    if np.issubdtype(x.dtype, np.floating) and x.size:
        if not np.isfinite(x).all():
            raise DatasetError(f"{where} contains NaN or infinite values")
        if float(np.abs(x).max()) > FLOAT32_MAX:  # finite in float64, infinite once cast to float32
            raise DatasetError(f"{where} holds values up to {float(np.abs(x).max()):.3g}, beyond float32 "
                               f"(max {FLOAT32_MAX:.3g}); scale the data")


def _npz_split(arrays: dict[str, np.ndarray], split: str, where: str) -> ArraySplit:
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.ndim not in (2, 3, 4, 5):
        raise DatasetError(
            f"{where}: x_{split} has shape {list(x.shape)}; expected images [N, H, W] or [N, C, H, W] "
            "(or flat features [N, F], or frames with a time axis [N, T, C, H, W] for the frames encoder)"
        )
    check_sample_values(x, f"{where}: x_{split}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DatasetError(f"{where}: y_{split} must be [N] labels with N = {x.shape[0]}, got shape {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(f"{where}: y_{split} must hold integer class labels >= 0 (dtype {y.dtype})")
    labels = _int64_labels(y, f"{where}: y_{split}")
    xt = torch.from_numpy(np.ascontiguousarray(x))
    if x.ndim == 3:
        xt = xt.unsqueeze(1)
    if xt.is_floating_point():
        xt = xt.float()
    return ArraySplit(xt, torch.from_numpy(labels))


def _load_npz(path: Path, max_memory: int | None = None) -> Dataset:
    where = f"npz:{path}"
    if not path.is_file():
        raise DatasetError(f"{where}: no such file; save your arrays with numpy.savez(PATH, x_train=..., y_train=..., "
                           "x_test=..., y_test=...)")

    def choose(names: list[str]) -> list[str]:
        missing = [k for k in NPZ_ARRAYS if k not in names]
        if missing:
            raise DatasetError(f"{where}: missing arrays {', '.join(missing)} (found: {', '.join(names)})")
        return list(NPZ_ARRAYS)

    arrays = read_npz(path, where, choose, max_memory)
    train, test = _npz_split(arrays, "train", where), _npz_split(arrays, "test", where)
    if train.x.shape[1:] != test.x.shape[1:]:
        raise DatasetError(f"{where}: x_train samples are {list(train.x.shape[1:])} but x_test samples are "
                           f"{list(test.x.shape[1:])}")
    return Dataset(where, train, test)


def _load_mnist_mini() -> Dataset:
    from softspike.data import mnist_mini_arrays  # 10,000 + 2,000 MNIST images shipped in the package

    a = mnist_mini_arrays()
    split = {s: ArraySplit(torch.from_numpy(a[f"x_{s}"]).unsqueeze(1), torch.from_numpy(a[f"y_{s}"]).long())
             for s in ("train", "test")}
    return Dataset("mnist_mini", split["train"], split["test"])


def load_dataset(name: str, root: str | Path = "data", download: bool = False, T: int | None = None,
                 max_memory: int | None = None) -> Dataset:
    """Load `mnist`, `fashion_mnist`, `cifar10` (from `root`), `mnist_mini` (embedded), `npz:PATH`
    or `tonic:NAME` (event-camera and audio spike data through tonic, framed into T steps, cached in `root`).

    An `.npz` (a user's, or tonic's frame cache) whose arrays would take more than `max_memory` bytes
    (default: the machine's memory) is refused before it is decompressed."""
    root = Path(root)
    if name.startswith("tonic:"):
        from softspike.train.tonic_data import load_tonic  # imports this module

        return load_tonic(name, root, download, T, max_memory)
    if name == "mnist_mini":
        return _load_mnist_mini()
    if name.startswith("npz:"):
        return _load_npz(Path(name[4:]), max_memory)
    if name in ("mnist", "fashion_mnist"):
        return _load_mnist_like(name, root, download)
    if name == "cifar10":
        return _load_cifar10(root, download)
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
