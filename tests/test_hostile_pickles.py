"""No code runs from data or checkpoints: a code-running pickle is planted in every path softspike
reads files from, and the marker file its payload would create must never appear."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from softspike.cli import main
from softspike.core.errors import SoftspikeError
from softspike.train import load_checkpoint, load_dataset
from softspike.train.safe_pickle import load_data_pickle
from softspike.train.trained import load_trained
from test_train_data import write_cifar10

SPEC: dict[str, Any] = {
    "name": "p", "input_shape": [4], "T": 2, "encoder": {"type": "constant"},
    "layers": [{"type": "linear", "out_features": 3}, {"type": "neuron", "neuron": {"type": "if"}}],
}


class Payload:
    """Unpickling this runs `exec`, which writes the marker file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def payload_bytes(marker: Path, protocol: int = 2) -> bytes:
    return pickle.dumps({b"data": Payload(marker), b"labels": [0]}, protocol=protocol)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "PWNED"
    # The payload works: plain pickle.load would run it (so each test below shows a real refusal).
    pickle.loads(payload_bytes(path))
    assert path.exists()
    path.unlink()
    return path


def _cifar_with_payload(root: Path, marker: Path, protocol: int = 2) -> None:
    write_cifar10(root)
    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(payload_bytes(marker, protocol))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_cifar_batch_that_runs_code_is_refused(tmp_path: Path, marker: Path, protocol: int) -> None:
    _cifar_with_payload(tmp_path, marker, protocol)
    refused = r"data_batch_1 is not a CIFAR-10 batch file .*refused to load (__builtin__|builtins)\.exec"
    with pytest.raises(SoftspikeError, match=refused):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_numpy_pickles_still_load(protocol: int) -> None:
    entry = {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), b"labels": [1, 2], "f": np.float32(0.5),
             "names": [b"a", "b"], "t": (1, 2.0, None, True)}
    got = load_data_pickle(io.BytesIO(pickle.dumps(entry, protocol=protocol)))
    assert np.array_equal(got[b"data"], entry[b"data"]) and got["names"] == [b"a", "b"] and got["t"] == entry["t"]


@pytest.mark.parametrize("value", [np.array([object()], dtype=object), np.zeros(2, dtype=[("a", "O")])])
def test_object_arrays_in_a_data_pickle_are_refused(value: Any) -> None:
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        load_data_pickle(io.BytesIO(pickle.dumps({b"data": value}, protocol=2)))


def test_evaluate_cannot_be_pointed_at_a_crafted_data_directory(tmp_path: Path, marker: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # A checkpoint that passes weights_only, whose stored config names a poisoned CIFAR-10 directory.
    _cifar_with_payload(tmp_path / "evil", marker)
    spec = dict(SPEC, input_shape=[3, 32, 32], layers=[{"type": "flatten"}, *SPEC["layers"]])
    from softspike.models import build, check_spec
    from softspike.train import save_checkpoint

    net = build(check_spec(spec))
    save_checkpoint(tmp_path / "last.pt", {
        "spec": json.dumps(check_spec(spec).to_json(), sort_keys=True), "model": net.state_dict(),
        "config": json.dumps({"dataset": "cifar10", "data_root": str(tmp_path / "evil")}),
    })
    assert main(["evaluate", "--checkpoint", str(tmp_path / "last.pt")]) == 1
    err = capsys.readouterr().err
    assert "refused to load __builtin__.exec" in err and "Traceback" not in err
    assert not marker.exists()


def _torch_file_with_payload(path: Path, marker: Path) -> None:
    torch.save({"format": "softspike-checkpoint-1", "spec": Payload(marker)}, path)


def test_checkpoints_that_run_code_are_refused_everywhere(tmp_path: Path, marker: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    _torch_file_with_payload(ck / "last.pt", marker)
    (tmp_path / "raw.pt").write_bytes(payload_bytes(marker))  # a bare pickle, not a torch zip
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    for path in (ck / "last.pt", tmp_path / "raw.pt"):
        with pytest.raises(SoftspikeError, match="not a readable softspike checkpoint"):
            load_checkpoint(path)
        with pytest.raises(SoftspikeError):
            load_trained(path)
        for argv in (["evaluate", "--checkpoint", str(path)], ["predict", "--checkpoint", str(path), str(path)]):
            assert main(argv) == 1
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 4), np.float32), y_train=np.zeros(4, np.int64),
             x_test=np.zeros((2, 4), np.float32), y_test=np.zeros(2, np.int64))
    resume = ["train", str(tmp_path / "spec.json"), "--dataset", f"npz:{tmp_path / 'd.npz'}", "--checkpoint", str(ck),
              "--quiet"]
    assert main([*resume, "--resume"]) == 1
    # A new run over it: the unreadable checkpoint is not silently replaced, and nothing runs.
    assert main(resume) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unreadable checkpoint" in err
    assert not marker.exists()


def _npz_with_pickled_array(path: Path, marker: Path, key: str, others: dict[str, np.ndarray]) -> None:
    """An .npz whose `key` member is an object array: numpy stores it as a pickle."""
    np.savez(path, **others)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(f"{key}.npy", buf.getvalue())


def test_npz_files_with_pickled_arrays_are_refused(tmp_path: Path, marker: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    arrays = {"x_train": np.zeros((4, 4), np.float32), "y_train": np.zeros(4, np.int64),
              "x_test": np.zeros((2, 4), np.float32)}
    _npz_with_pickled_array(tmp_path / "d.npz", marker, "y_test", arrays)
    with pytest.raises(SoftspikeError, match=r"Object arrays cannot be loaded|holds Python objects"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")
    _npz_with_pickled_array(tmp_path / "x.npz", marker, "x", {})
    from softspike.cli.predict import read_samples

    with pytest.raises(SoftspikeError, match=r"holds Python objects"):
        read_samples(tmp_path / "x.npz", (4,))
    (tmp_path / "img.png").write_bytes(payload_bytes(marker))  # a pickle posing as an image
    with pytest.raises(SoftspikeError, match="not a readable image"):
        read_samples(tmp_path / "img.png", (1, 4, 4))
    assert not marker.exists()


def test_mnist_legacy_files_that_run_code_are_refused(tmp_path: Path, marker: Path) -> None:
    # torchvision reads MNIST/processed/*.pt when present; they must go through weights_only too.
    folder = tmp_path / "MNIST" / "processed"
    folder.mkdir(parents=True)
    for name in ("training.pt", "test.pt"):
        _torch_file_with_payload(folder / name, marker)
    with pytest.raises(SoftspikeError, match="damaged or not data"):
        load_dataset("mnist", tmp_path)
    assert not marker.exists()


def test_a_tonic_frame_cache_that_runs_code_is_refused(tmp_path: Path, marker: Path) -> None:
    # A cache present means tonic is never asked: this path needs no tonic installed.
    from softspike.train.tonic_data import CACHE_DIR, parse_name

    cache = tmp_path / "NMNIST" / CACHE_DIR / f"train-{parse_name('tonic:NMNIST').key(8)}.npz"
    cache.parent.mkdir(parents=True)
    _npz_with_pickled_array(cache, marker, "x", {"y": np.zeros(1, np.int64)})
    with pytest.raises(SoftspikeError, match=r"the frame cache .* is not readable"):
        load_dataset("tonic:NMNIST", tmp_path, T=8)
    assert not marker.exists()
