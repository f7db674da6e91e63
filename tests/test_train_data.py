"""Datasets: CIFAR-10 in its own on-disk format, a user's .npz arrays, and missing data explained."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from softspike.cli import main
from softspike.models import check_spec
from softspike.train import DatasetError, fit, load_dataset

MNIST_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_cifar10(root: Path, per_batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny CIFAR-10 files exactly as the python version ships them: pickled dicts with bytes keys."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        entry = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)]}
        with (folder / name).open("wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[name] = data
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [b"airplane", b"automobile", b"bird", b"cat",
            b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"], b"num_vis": 3072}
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump(meta, f, protocol=2)
    return written


def test_cifar10_is_read_from_its_on_disk_format(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path)
    data = load_dataset("cifar10", tmp_path)
    assert data.train.x.shape == (10, 3, 32, 32) and data.train.x.dtype == torch.uint8
    assert data.test.x.shape == (2, 3, 32, 32)
    first = written["data_batch_1"][0]
    # Rows of 3072 bytes: 1024 red, then green, then blue, each 32x32 row-major.
    assert int(data.train.x[0, 0, 0, 1]) == first[1]
    assert int(data.train.x[0, 1, 0, 0]) == first[1024]
    assert int(data.train.x[0, 2, 31, 31]) == first[3071]
    x, _ = data.train.batch(torch.tensor([0]))
    assert x.dtype == torch.float32 and float(x.max()) <= 1.0


def test_cifar10_trains_through_the_loop(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "data")
    spec = check_spec({"name": "c", "input_shape": [3, 32, 32], "T": 1, "encoder": {"type": "constant"},
                       "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2},
                                  {"type": "neuron", "neuron": {"type": "if"}}, {"type": "maxpool2d", "kernel_size": 4},
                                  {"type": "flatten"}, {"type": "linear", "out_features": 10},
                                  {"type": "neuron", "neuron": {"type": "if"}}]})
    metrics = fit(spec, {"dataset": "cifar10", "data_root": str(tmp_path / "data"), "epochs": 1, "batch_size": 4,
                         "progress": False}, logdir=tmp_path / "log", verbose=False)
    assert metrics["final"]["epoch"] == 1
    saved = json.loads((tmp_path / "log" / "metrics.json").read_text())
    assert saved["final"]["test_accuracy"] == metrics["final"]["test_accuracy"]
    assert set(saved["final"]["firing_rates"]) == {"layers[1]", "layers[5]"}
    assert list((tmp_path / "log").glob("events.out.tfevents.*"))


def test_missing_cifar10_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"--download.*cifar-10-python"):
        load_dataset("cifar10", tmp_path)


def test_corrupt_cifar10_file_is_a_clear_error(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="data_batch_3 is not a CIFAR-10 batch file"):
        load_dataset("cifar10", tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_missing_mnist_says_how_to_get_it_without_downloading(name: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"not found in .*raw.*--download"):
        load_dataset(name, tmp_path)
    assert not any(tmp_path.rglob("*.gz"))


def test_cli_train_on_missing_dataset_exits_1_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "mnist_fc", "--dataset", "mnist", "--data-root", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("softspike train: error: mnist: not found in") and "--download" in err
    assert "Traceback" not in err


@pytest.mark.skipif(not (MNIST_ROOT / "MNIST" / "raw").is_dir(), reason="no local MNIST copy")
def test_real_mnist_loads() -> None:
    data = load_dataset("mnist", MNIST_ROOT)
    assert data.train.x.shape == (60000, 1, 28, 28) and len(data.test) == 10000
    data.check_fits([1, 28, 28], 10, "mnist_fc")


def _npz(path: Path, **arrays: Any) -> str:
    rng = np.random.default_rng(0)
    base = {"x_train": rng.integers(0, 256, (6, 5, 5), dtype=np.uint8), "y_train": np.arange(6) % 3,
            "x_test": rng.integers(0, 256, (4, 5, 5), dtype=np.uint8), "y_test": np.arange(4) % 3}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return f"npz:{path}"


def test_npz_uint8_images_gain_a_channel_and_are_scaled(tmp_path: Path) -> None:
    data = load_dataset(_npz(tmp_path / "d.npz"))
    assert data.sample_shape == (1, 5, 5)
    x, y = data.train.batch(torch.arange(6))
    raw = np.load(tmp_path / "d.npz")["x_train"]
    assert torch.allclose(x[:, 0], torch.from_numpy(raw).float() / 255)
    assert y.dtype == torch.int64


def test_npz_floats_are_taken_as_given(tmp_path: Path) -> None:
    x = np.full((6, 2, 5, 5), 3.5, dtype=np.float64)
    data = load_dataset(_npz(tmp_path / "d.npz", x_train=x, x_test=x[:4]))
    assert data.sample_shape == (2, 5, 5)
    assert float(data.train.batch(torch.tensor([0]))[0].max()) == 3.5


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y_test": None}, "missing arrays y_test"),
        ({"x_train": np.zeros((6,), np.uint8)}, r"x_train has shape \[6\]"),
        ({"x_train": np.zeros((6, 5, 5), np.int64)}, "x_train has dtype int64; give uint8"),
        ({"y_train": np.arange(5)}, r"y_train must be \[N\] labels with N = 6"),
        ({"y_train": np.full(6, -1)}, "integer class labels >= 0"),
        ({"x_test": np.zeros((4, 6, 6), np.uint8)}, r"x_train samples are \[1, 5, 5\] but x_test"),
        ({"x_train": np.full((6, 5, 5), np.nan)}, "NaN or infinite"),
    ],
)
def test_bad_npz_arrays_are_clear_errors(tmp_path: Path, arrays: dict[str, Any], message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_dataset(_npz(tmp_path / "d.npz", **arrays))


def test_npz_that_disagrees_with_the_spec_is_a_clear_error(tmp_path: Path) -> None:
    data = load_dataset(_npz(tmp_path / "d.npz"))
    with pytest.raises(DatasetError, match=r"samples of shape \[1, 5, 5\], but spec 'mnist_fc' expects input_shape "
                                           r"\[1, 28, 28\]"):
        data.check_fits([1, 28, 28], 10, "mnist_fc")
    with pytest.raises(DatasetError, match="label 2 is out of range"):
        data.check_fits([1, 5, 5], 2, "two_classes")


def test_not_an_npz_file(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(DatasetError, match=r"not a readable \.npz file"):
        load_dataset(f"npz:{tmp_path / 'x.npz'}")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(f"npz:{tmp_path / 'nothing.npz'}")
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
