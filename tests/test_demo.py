"""The offline first run: the embedded MNIST subset, the demo's choice of data, and --help everywhere."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from softspike import demo
from softspike.data import mnist_mini_arrays
from softspike.train.data import load_dataset

ROOT = Path(__file__).resolve().parent.parent


def test_mnist_mini_is_small_uint8_and_has_every_class() -> None:
    a = mnist_mini_arrays()
    assert a["x_train"].shape == (10000, 28, 28) and a["x_test"].shape == (2000, 28, 28)
    assert {v.dtype.name for v in a.values()} == {"uint8"}
    assert set(a["y_train"].tolist()) == set(range(10)) == set(a["y_test"].tolist())
    path = Path(demo.__file__).parent / "data" / "mnist_mini.npz"
    assert path.stat().st_size < 3_000_000
    assert (path.parent / "README.md").read_text().count("CC BY-SA 3.0") >= 1


def test_load_dataset_mnist_mini_fits_mnist_specs() -> None:
    data = load_dataset("mnist_mini", root="/nonexistent")
    assert data.sample_shape == (1, 28, 28) and len(data.train) == 10000 and len(data.test) == 2000
    data.check_fits([1, 28, 28], 10, "mnist_fc")


def _fake_mnist(root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in demo.MNIST_FILES:
        (raw / name).write_bytes(b"")
    return root


def test_demo_uses_a_local_mnist_else_the_embedded_subset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert demo.choose_data(None, False, False)[0] == "mnist_mini"
    _fake_mnist(tmp_path / "data")
    assert demo.choose_data(None, False, False)[:2] == ("mnist", Path("data"))
    assert demo.choose_data(None, False, True)[0] == "mnist_mini"
    assert demo.choose_data(Path("elsewhere"), True, False)[:2] == ("mnist", Path("elsewhere"))


def test_demo_with_a_missing_data_root_says_how_to_get_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--data-root", str(tmp_path), "--epochs", "1", "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert "not found in" in err and "--download" in err


def test_demo_trains_on_the_embedded_subset(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--embedded", "--epochs", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "embedded subset" in out and "test accuracy" in out
    accuracy = float(out.rsplit("test accuracy: ", 1)[1].split("%")[0])
    assert accuracy > 70.0  # one epoch on 10,000 images; chance is 10 %


@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")  # runpy of an imported module
@pytest.mark.parametrize("target", [
    "softspike.demo", "softspike", "softspike.data.mnist_mini",
    *[str(p) for p in sorted((ROOT / "benchmarks").glob("*.py"))],
], ids=lambda t: t.rsplit("/", 1)[-1])
def test_every_entry_point_answers_help_without_side_effects(
    target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process (a subprocess per entry point costs seconds of imports): run it as __main__ with --help."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [target, "--help"])
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    with pytest.raises(SystemExit) as exit_:
        if target.endswith(".py"):
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    assert exit_.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []  # nothing downloaded, no folder made
