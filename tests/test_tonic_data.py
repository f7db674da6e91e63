"""Event data through tonic: synthetic recordings written in tonic's own on-disk formats (N-MNIST's
.bin files, DVS Gesture's .npy files, SHD's HDF5), framed by tonic into the spec's T steps, cached,
and trained on from the zoo's nmnist_conv spec with the frames encoder."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from softspike.core.errors import SoftspikeError
from softspike.models import build, check_spec, load_spec
from softspike.models.load import read_spec_text
from softspike.plugins.encoders import FramesEncoder
from softspike.train import fit
from softspike.train.data import DatasetError, load_dataset
from softspike.train.tonic_data import parse_name

tonic = pytest.importorskip("tonic", reason="tonic (the [data] extra) is not installed")
h5py = pytest.importorskip("h5py", reason="h5py (a dependency of tonic) is not installed")
RNG = np.random.default_rng(0)


@pytest.fixture
def few_files_are_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    """tonic takes a folder with fewer files than the real dataset for a half-extracted archive."""
    original = tonic.dataset.Dataset._folder_contains_at_least_n_files_of_type
    monkeypatch.setattr(tonic.dataset.Dataset, "_folder_contains_at_least_n_files_of_type",
                        lambda self, n, ext: original(self, 1, ext))


def _nmnist_bin(label: int, n: int = 300) -> bytes:
    """One recording in N-MNIST's format: 5 bytes per event (x, y, p<<7 | t>>16, t>>8, t), 23-bit t in µs.
    Each class lights its own band of columns, so the classes can be learned."""
    x = RNG.integers(3 * label, 3 * label + 4, n)
    y = RNG.integers(0, 34, n)
    t = np.sort(RNG.integers(0, 300_000, n))
    p = RNG.integers(0, 2, n)
    raw = np.stack([x, y, (p << 7) | ((t >> 16) & 127), (t >> 8) & 255, t & 255], axis=1).astype(np.uint8)
    return raw.tobytes()


def write_nmnist(root: Path, per_class: tuple[int, int] = (6, 2)) -> Path:
    for folder, zipname, count in (("Train", "train.zip", per_class[0]), ("Test", "test.zip", per_class[1])):
        (root / "NMNIST").mkdir(parents=True, exist_ok=True)
        (root / "NMNIST" / zipname).write_bytes(b"")  # tonic checks the archive is there, then reads the folder
        for label in range(10):
            d = root / "NMNIST" / folder / str(label)
            d.mkdir(parents=True)
            for i in range(count):
                (d / f"{i:05d}.bin").write_bytes(_nmnist_bin(label))
    return root


def test_nmnist_through_tonic_frames_to_the_spec_t_and_caches(tmp_path: Path, few_files_are_enough: None) -> None:
    write_nmnist(tmp_path)
    data = load_dataset("tonic:NMNIST", tmp_path, T=8)
    assert data.train.x.shape == (60, 8, 2, 34, 34) and data.test.x.shape == (20, 8, 2, 34, 34)
    assert data.train.x.dtype == torch.int16 and int(data.train.x.sum()) > 0.9 * 60 * 300
    assert sorted(set(data.train.y.tolist())) == list(range(10))
    cached = sorted(p.name for p in (tmp_path / "NMNIST" / "softspike-frames").iterdir())
    assert cached == ["test-T8-n_time_bins.npz", "train-T8-n_time_bins.npz"]
    for f in (tmp_path / "NMNIST" / "Train").rglob("*.bin"):
        f.unlink()  # the second run reads the cache only
    again = load_dataset("tonic:NMNIST", tmp_path, T=8)
    assert torch.equal(again.train.x, data.train.x)


def test_other_framings_and_downsampling(tmp_path: Path, few_files_are_enough: None) -> None:
    write_nmnist(tmp_path, (1, 1))
    by_window = load_dataset("tonic:NMNIST,time_window=20000", tmp_path, T=4)  # 4 of 15 windows kept
    assert by_window.train.x.shape == (10, 4, 2, 34, 34)
    by_count = load_dataset("tonic:NMNIST,event_count=100", tmp_path, T=5)  # 3 frames of 100, 2 empty
    assert by_count.train.x.shape == (10, 5, 2, 34, 34)
    assert (by_count.train.x[:, :3].sum(dim=(2, 3, 4)) == 100).all() and by_count.train.x[:, 3:].sum() == 0
    by_events = load_dataset("tonic:NMNIST,n_event_bins", tmp_path, T=3)
    assert by_events.train.x.shape == (10, 3, 2, 34, 34)
    with pytest.raises(DatasetError, match="the spec's T = 3"):
        load_dataset("tonic:NMNIST,n_time_bins=5", tmp_path, T=3)
    small = load_dataset("tonic:NMNIST,downsample=0.25", tmp_path, T=2)
    assert small.train.x.shape == (10, 2, 2, 9, 9)


def test_dvsgesture_and_shd_in_their_formats(tmp_path: Path, few_files_are_enough: None) -> None:
    for name in ("ibmGestureTrain", "ibmGestureTest"):
        folder = tmp_path / "DVSGesture" / name / "user01_fluorescent"
        folder.mkdir(parents=True)
        (tmp_path / "DVSGesture" / f"{name}.tar.gz").write_bytes(b"")
        for label in range(11):  # columns x, y, p, t in ms, as tonic's preprocessed copy stores them
            n = 200
            ev = np.stack([RNG.integers(0, 128, n), RNG.integers(0, 128, n), RNG.integers(0, 2, n),
                           np.sort(RNG.integers(0, 1000, n))], axis=1)
            np.save(folder / f"{label}.npy", ev)
    gestures = load_dataset("tonic:DVSGesture,downsample=0.25", tmp_path, T=6)
    assert gestures.train.x.shape == (11, 6, 2, 32, 32) and gestures.sample_shape == (6, 2, 32, 32)

    for split, n in (("train", 12), ("test", 4)):
        (tmp_path / "SHD").mkdir(exist_ok=True)
        (tmp_path / "SHD" / f"shd_{split}.h5.zip").write_bytes(b"")
        with h5py.File(tmp_path / "SHD" / f"shd_{split}.h5", "w") as f:
            times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            for i in range(n):
                times[i] = np.sort(RNG.uniform(0, 1.0, 100)).astype(np.float32)  # seconds
                units[i] = RNG.integers(0, 700, 100).astype(np.uint16)
            f["labels"] = np.arange(n) % 20
            f["extra/keys"] = np.array([b"k"] * 20)
            f["extra/speaker"] = np.zeros(n, dtype=np.int64)
    audio = load_dataset("tonic:SHD", tmp_path, T=10)
    assert audio.train.x.shape == (12, 10, 700) and int(audio.train.x[0].sum()) >= 99
    assert audio.test.y.tolist() == [0, 1, 2, 3]


def test_a_missing_tonic_dataset_says_where_and_never_downloads(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"tonic:NMNIST: not found in .*NMNIST .*--download"):
        load_dataset("tonic:NMNIST", tmp_path, T=8)
    with pytest.raises(DatasetError, match=r"did you mean tonic:NMNIST"):
        parse_name("tonic:NMIST")
    with pytest.raises(DatasetError, match=r"give one way of slicing"):
        parse_name("tonic:SHD,time_window=1000,event_count=10")
    with pytest.raises(DatasetError, match=r"downsample must be in \(0, 1\]"):
        parse_name("tonic:SHD,downsample=2")
    with pytest.raises(DatasetError, match="the spec's T"):
        load_dataset("tonic:SHD", tmp_path)


def test_the_zoo_nmnist_spec_trains_through_tonic(tmp_path: Path, few_files_are_enough: None) -> None:
    write_nmnist(tmp_path, (4, 1))
    metrics = fit(load_spec("nmnist_conv"), {"dataset": "tonic:NMNIST", "data_root": str(tmp_path), "epochs": 3,
                                             "batch_size": 10, "lr": 1e-2, "progress": False}, verbose=False)
    first, last = metrics["epochs"][0], metrics["epochs"][-1]
    assert last["train_loss"] < first["train_loss"], metrics["epochs"]
    assert last["train_accuracy"] >= 0.3, metrics["epochs"]  # 10 classes: chance is 0.1
    assert np.isfinite(last["test_loss"])


def test_frames_encoder_and_the_input_shape_rule() -> None:
    enc = FramesEncoder()
    x = torch.rand(3, 4, 2, 5, 5)
    assert torch.equal(enc.encode(x, 4), x.transpose(0, 1))
    assert torch.equal(enc(x[:, 0]), x[:, 0])  # single step: the data's own step
    with pytest.raises(ValueError, match="has 5 time steps"):
        enc.encode(torch.rand(3, 5, 2), 4)
    with pytest.raises(TypeError, match=r"expected a floating-point batch \[B, T, \.\.\.\]"):
        enc.encode(torch.rand(3), 4)
    spec = json.loads(read_spec_text("nmnist_conv")[0])
    for change, message in (({"T": 4}, "with T = 4, got [8, 2, 34, 34]"),
                            ({"encoder": {"type": "poisson"}}, 'use "encoder": {"type": "frames"}'),
                            ({"input_shape": [2, 34, 34]}, "[T, features] or [T, channels, height, width]")):
        with pytest.raises(SoftspikeError, match=re.escape(message)):
            check_spec({**copy.deepcopy(spec), **change}, "nmnist")


def test_npz_frames_with_a_time_axis_train(tmp_path: Path) -> None:
    path = tmp_path / "frames.npz"
    x = RNG.random((40, 3, 1, 6, 6)).astype(np.float32)
    y = np.arange(40) % 2
    np.savez(path, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    spec: dict[str, Any] = {"name": "f", "input_shape": [3, 1, 6, 6], "T": 3, "encoder": {"type": "frames"},
                            "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 2},
                                       {"type": "neuron", "neuron": {"type": "if"}}]}
    checked = check_spec(spec)
    assert build(checked)(torch.from_numpy(x[:2])).shape == (2, 2)
    metrics = fit(checked, {"dataset": f"npz:{path}", "epochs": 1, "batch_size": 8, "progress": False},
                  verbose=False)
    assert metrics["final"]["epoch"] == 1


def test_frames_shift_together() -> None:
    from softspike.train.augment import random_shift

    x = torch.zeros(4, 3, 2, 9, 9)
    x[:, :, :, 4, 4] = 1.0
    moved = random_shift(x, 2)
    assert moved.shape == x.shape and moved.sum() == x.sum()
    where = moved.nonzero()[:, [0, 3, 4]].unique(dim=0)  # one (row, column) per sample, for every step and polarity
    assert len(where) == 4 and where[:, 0].tolist() == [0, 1, 2, 3]
