"""Malformed specs: each file in tests/specs/bad gives exit 1 and an error naming its JSON path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from softspike.cli import main

BAD = Path(__file__).parent / "specs" / "bad"
EXPECTED: dict[str, str] = json.loads((BAD / "expected.json").read_text())


def test_corpus_is_complete() -> None:
    files = {p.name for p in BAD.glob("*.json")} - {"expected.json"}
    assert files == set(EXPECTED)
    assert len(files) >= 60


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_spec_is_rejected_with_its_path(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(BAD / name)])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.startswith("softspike validate: error: ")
    assert "Traceback" not in err
    lines = [line.strip() for line in err.splitlines()]
    path = EXPECTED[name]
    # The path leads its line (`.../bad/x.json: layers[2].neuron.tau: must be >= 0.5: ... (got -2.0)`), or an
    # indented one.
    assert any(line.startswith(f"{path}: ") or f".json: {path}: " in line for line in lines), err


@pytest.mark.parametrize("command", ["validate", "summary", "train", "evaluate"])
def test_every_spec_command_reports_bad_specs_plainly(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [command, str(BAD / "neuron_tau_negative.json")]
    if command == "evaluate":
        argv += ["--checkpoint", "nowhere.pt"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "layers[2].neuron.tau: must be >= 0.5" in err


def test_unknown_zoo_name_suggests_close_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "mnist_fx"]) == 1
    err = capsys.readouterr().err
    assert "did you mean 'mnist_fc'" in err


#: Specs that validate as documents but would crash later, or fail inside torch's allocator (issue 10).
RESOURCE_BOMBS = ["linear_1e9_outputs.json", "conv_1e5_channels.json", "t_1e7.json", "input_shape_huge.json"]


@pytest.mark.parametrize("command", ["summary", "train"])
@pytest.mark.parametrize("name", [*RESOURCE_BOMBS, "residual_nested_40.json", "v_threshold_huge.json"])
def test_summary_and_train_refuse_before_allocating(name: str, command: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # train refuses before it reads any data: the dataset given does not even exist.
    argv = [command, str(BAD / name)] + (["--dataset", "npz:/nonexistent.npz"] if command == "train" else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"softspike {command}: error: ") and "Traceback" not in err
    assert f".json: {EXPECTED[name]}: " in err
    if name in RESOURCE_BOMBS:
        assert "over the memory limit" in err and "--max-memory" in err
