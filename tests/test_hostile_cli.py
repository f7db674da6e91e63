"""No command-line input ends in a traceback or a signal death: exit 0, 1, 2 or 130 only.

A corpus of hostile inputs (every bad spec of tests/specs/bad under every spec command, option values
that overflow or name unusable devices, broken datasets, checkpoints with the right format tag but the
wrong insides, predict inputs that are not what they claim) runs through `softspike.cli.main` in ONE
child process, which reports per case the exit status, whether anything escaped `main` and whether
"Traceback" was printed; a signal death of that child names the case it was running. Cases with a
known answer also check the status and a fragment of the message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from softspike.cli import main
from softspike.train import load_checkpoint, save_checkpoint

BAD_SPECS = sorted((Path(__file__).parent / "specs" / "bad").glob("*.json"))
SRC = str(Path(__file__).resolve().parents[1] / "src")
SPEC: dict[str, Any] = {
    "name": "h", "input_shape": [1, 4, 4], "T": 2, "encoder": {"type": "constant"},
    "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3},
               {"type": "neuron", "neuron": {"type": "if"}}],
}
ALLOWED = {0, 1, 2, 130}

RUNNER = textwrap.dedent("""
    import contextlib, io, json, sys, traceback
    import torch
    torch.set_num_threads(1)
    from softspike.cli import main
    cases, out = json.load(open(sys.argv[1])), []
    for i, case in enumerate(cases):
        print(f"case {i}: {case['argv']}", file=sys.__stderr__, flush=True)  # names the case if we die
        err, escaped = io.StringIO(), None
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(case["argv"])
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
            except BaseException as exc:
                code, escaped = None, "".join(traceback.format_exception(exc))[-1500:]
        out.append({"code": code, "escaped": escaped, "stderr": err.getvalue()[-1500:]})
    json.dump(out, open(sys.argv[2], "w"))
""")


def run_cases(folder: Path, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run every case's argv through `main` in one child process: its code, what escaped, its stderr."""
    (folder / "cases.json").write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(folder / "cases.json"), str(folder / "out.json")],
                          env=env, capture_output=True, text=True, timeout=300)
    last = proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else []
    assert proc.returncode == 0, f"the runner died (status {proc.returncode}) at {last}"
    results: list[dict[str, Any]] = json.loads((folder / "out.json").read_text())
    assert len(results) == len(cases)
    return results


def _npz(path: Path, **override: Any) -> str:
    arrays: dict[str, Any] = {"x_train": np.zeros((6, 4, 4), np.uint8), "y_train": np.arange(6) % 3,
                              "x_test": np.zeros((3, 4, 4), np.uint8), "y_test": np.arange(3) % 3}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return f"npz:{path}"


def _checkpoints(d: Path, good: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """Checkpoints with the right format tag but wrong insides -> (path, what the error must say)."""
    weights = dict(good["model"])
    w = next(k for k, v in weights.items() if v.dim() == 2)  # the linear layer's weight, [3, 16]
    other = json.loads(good["spec"])
    other["layers"][1]["out_features"] = 5
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "only_tag": ({}, "spec: missing"),
        "spec_not_str": ({**good, "spec": {"name": "h"}}, "spec: the network spec as JSON text should be a str"),
        "spec_not_json": ({**good, "spec": "{not json"}, "spec: the network spec as JSON text is not valid JSON"),
        "spec_invalid": ({**good, "spec": json.dumps({"name": "h"})}, "(its stored spec)"),
        "config_list": ({**good, "config": "[1, 2]"}, "config: the training options as JSON text should hold"),
        "config_bad": ({**good, "config": json.dumps({"lr": -1})}, "its stored training options are not valid"),
        "model_list": ({**good, "model": [1, 2]}, "model: the network's weights (name -> tensor) should be a dict"),
        "model_shapes": ({**good, "model": {**weights, w: torch.zeros(7, 7)}},
                         f"{w} has shape [7, 7], the network's is [3, 16]"),
        "model_missing": ({**good, "model": {}}, f"model: {w} is missing"),
        "model_not_tensor": ({**good, "model": {**weights, "x": 3}}, "model: entries x are not named tensors"),
        "other_spec_weights": ({**good, "spec": json.dumps(other)}, "has shape [3, 16], the network's is [5, 16]"),
        "log_bad": ({**good, "log": {"epoch": "one"}}, "log.epoch: missing or not a int"),
        "optimizer_bad": ({**good, "optimizer": {"state": {}, "param_groups": "x"}},
                          "its optimizer state cannot be restored"),
        "optimizer_shapes": ({**good, "optimizer": {**good["optimizer"], "state": {
            0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}}}},
            "exp_avg has shape [2] for a parameter of shape [3, 16]"),
        "rng_bad": ({**good, "rng": {"torch": "x"}}, "its random-number states cannot be restored"),
    }
    out = {}
    for name, (state, fragment) in cases.items():
        folder = d / "ck_bad" / name
        save_checkpoint(folder / "last.pt", {k: v for k, v in state.items() if k != "format"})
        out[name] = (folder, fragment)
    return out


def _spec_bombs() -> dict[str, str]:
    """Specs of issue 10 item 4 (deep nesting, huge numbers, resource bombs) as JSON text."""
    neuron = {"type": "neuron", "neuron": {"type": "if"}}
    head = [{"type": "flatten"}, {"type": "linear", "out_features": 3}, neuron]
    nested: dict[str, Any] = neuron
    for _ in range(150):
        nested = {"type": "residual", "layers": [nested]}
    texts = {
        "nested_150": dict(SPEC, layers=[{"type": "flatten"}, {"type": "linear", "out_features": 8}, nested,
                                         *head[1:]]),
        "v_threshold_1e308": dict(SPEC, layers=[*head[:2], {**neuron, "v_threshold": 1e308}]),
        "linear_1e9": dict(SPEC, layers=[head[0], {"type": "linear", "out_features": 10**9}, *head[1:]]),
        "conv_1e7_channels": dict(SPEC, layers=[{"type": "conv2d", "out_channels": 10**7, "kernel_size": 3}, *head]),
        "t_1e7": dict(SPEC, T=10**7),
        "huge_input": dict(SPEC, input_shape=[3, 100000, 100000]),
    }
    out = {name: json.dumps(spec) for name, spec in texts.items()}
    out["digits_5000"] = json.dumps(SPEC).replace('"out_features": 3', '"out_features": ' + "9" * 5000)
    out["out_features_1e40"] = json.dumps(SPEC).replace('"out_features": 3', '"out_features": 1e40')
    return out


def _corpus(d: Path) -> list[dict[str, Any]]:
    spec = d / "spec.json"
    spec.write_text(json.dumps(SPEC))
    data = _npz(d / "d.npz")
    ck = d / "ck"
    assert main(["train", str(spec), "--dataset", data, "--checkpoint", str(ck), "--quiet"]) == 0
    good = load_checkpoint(ck / "last.pt")
    other_spec = d / "other.json"
    other_spec.write_text(json.dumps(dict(SPEC, T=3)))
    np.savez(d / "x.npz", x=np.zeros((2, 4, 4), np.float32))

    cases: list[dict[str, Any]] = []

    def add(argv: list[str], code: int | None = None, says: str | None = None) -> None:
        cases.append({"argv": [str(a) for a in argv], "code": code, "says": says})

    for bad in BAD_SPECS:
        if bad.name == "expected.json":
            continue
        add(["validate", bad], 1)
        add(["summary", bad], 1)
        add(["train", bad, "--dataset", data, "--quiet"], 1)
        add(["evaluate", bad, "--checkpoint", ck], 1)

    for name, text in _spec_bombs().items():  # issue 10 item 4: specs that validated, then crashed or exhausted memory
        (d / f"{name}.json").write_text(text)
        for command in ("validate", "summary"):
            add([command, d / f"{name}.json"], 1)
        add(["train", d / f"{name}.json", "--dataset", data, "--quiet"], 1)
    for value in ("x", "-5", "0", "1e400", "9" * 30 + "TiB"):
        add(["validate", spec, "--max-memory", value], 2, "argument --max-memory:")
    add(["summary", spec, "--batch-size", "0"], 2, "argument --batch-size:")

    train = ["train", spec, "--dataset", data, "--quiet", "--checkpoint", d / "ck_opts"]
    for opt, value in [("--lr", "1e300"), ("--lr", "nan"), ("--lr", "inf"), ("--lr", "-1"), ("--lr", "0"),
                       ("--seed", "99999999999999999999999"), ("--seed", "-1"), ("--seed", "1" * 5000),
                       ("--device", "meta"), ("--device", "privateuseone"), ("--device", "cuda:99999"),
                       ("--device", ""), ("--batch-size", "0"), ("--batch-size", "-5"), ("--epochs", "0"),
                       ("--epochs", "100000000000000000000"), ("--weight-decay", "1e300"), ("--augment-shift", "9"),
                       ("--checkpoint-every", "-1"), ("--train-subset", "-1"), ("--batch-size", "1e3")]:
        add([*train, opt, value], 2, f"argument {opt}:")
    for command, extra in (("evaluate", []), ("predict", [d / "x.npz"])):
        for opt, value in [("--batch-size", "0"), ("--batch-size", "-5"), ("--seed", "99999999999999999999999"),
                           ("--device", "meta"), ("--device", "privateuseone")]:
            add([command, "--checkpoint", ck, *extra, opt, value], 2, f"argument {opt}:")
    add([*train, "--device", "cuda:7"], 1, "is not usable here")

    for name, override, says in [
        ("u64", {"y_train": np.full(6, 2**64 - 1, np.uint64)}, "label 18446744073709551615 is out of range"),
        ("neg", {"y_test": np.full(3, -2)}, "label -2 is out of range"),
        ("big", {"x_train": np.full((6, 4, 4), 1e300)}, "beyond float32"),
        ("nan", {"x_test": np.full((3, 4, 4), np.nan)}, "NaN or infinite"),
        ("empty_test", {"x_test": np.zeros((0, 4, 4), np.uint8), "y_test": np.zeros(0, np.int64)},
         "has no test samples"),
        ("empty_train", {"x_train": np.zeros((0, 4, 4), np.uint8), "y_train": np.zeros(0, np.int64)},
         "has no training samples"),
        ("labels_float", {"y_train": np.zeros(6)}, "integer class labels"),
        ("label_range", {"y_train": np.full(6, 7)}, "label 7 is out of range for spec"),
        ("shape", {"x_train": np.zeros(6, np.uint8)}, "x_train has shape [6]"),
        ("missing", {"y_test": None}, "missing arrays y_test"),
    ]:
        add([*train, "--dataset", _npz(d / f"{name}.npz", **override)], 1, says)
        add(["evaluate", "--checkpoint", ck, "--dataset", f"npz:{d / f'{name}.npz'}"])  # 0 if the test split is fine
    (d / "junk.npz").write_bytes(b"PK\x03\x04 truncated")
    add([*train, "--dataset", f"npz:{d / 'junk.npz'}"], 1, "not a readable .npz")
    add([*train, "--dataset", f"npz:{d / 'nowhere.npz'}"], 1, "no such file")
    add([*train, "--dataset", "imagenet"], 1, "unknown dataset")
    add(["evaluate", "--checkpoint", ck, "--dataset", "cifar10", "--data-root", d / "nodata"], 1, "not found")

    for name, (folder, says) in _checkpoints(d, good).items():
        resume = name in ("log_bad", "optimizer_bad", "optimizer_shapes", "rng_bad")
        if resume:
            add(["train", spec, "--dataset", data, "--quiet", "--checkpoint", folder, "--resume"], 1, says)
            continue
        add(["evaluate", "--checkpoint", folder], 1, says)
        add(["predict", "--checkpoint", folder, d / "x.npz"], 1, says)
        if name not in ("spec_invalid", "config_bad", "other_spec_weights"):
            add(["train", spec, "--dataset", data, "--quiet", "--checkpoint", folder, "--resume"], 1, says)
    (d / "garbage.pt").write_bytes(b"\x80\x02garbage")
    (d / "empty.pt").write_bytes(b"")
    for path in (d / "garbage.pt", d / "empty.pt", d / "nowhere.pt", d / "x.npz", d):
        add(["evaluate", "--checkpoint", path], 1)
        add(["predict", "--checkpoint", path, d / "x.npz"], 1)
    add(["evaluate", other_spec, "--checkpoint", ck], 1, "T: checkpoint 2, given 3")
    add(["train", other_spec, "--dataset", data, "--quiet", "--checkpoint", ck], 1, "holds another spec's run")

    (d / "text.png").write_text("not an image")
    np.savez(d / "wrong.npz", x=np.zeros((2, 5, 5), np.float32))
    np.savez(d / "two.npz", a=np.zeros(2), b=np.zeros(2))
    np.savez(d / "inf.npz", x=np.full((1, 4, 4), np.inf))
    for path, says in [(d / "text.png", "not a readable image"), (d / "wrong.npz", "do not fit the network's input"),
                       (d / "two.npz", "name the samples array 'x'"), (d / "inf.npz", "NaN or infinite"),
                       (d / "nowhere.png", "no such file")]:
        add(["predict", "--checkpoint", ck, path], 1, says)
    add(["predict", "--checkpoint", ck, d / "x.npz"], 0)
    add(["evaluate", "--checkpoint", ck], 0)
    # The other commands that read checkpoints or take numbers (plot, export-nir, import-nir, plan, check).
    (d / "garbage.nir").write_bytes(b"garbage")
    plot = ["plot", ck, "--out", d / "o.png"]
    for opt, value in [("--seed", "99999999999999999999999"), ("--sample", "-1"), ("--count", "0"),
                       ("--neurons", "-3"), ("--out", d / "o.xyz")]:
        add([*plot, opt, value], 2, f"argument {opt}:")
    add([*plot, "--sample", "99999"], 1, "outside the test split")
    for name, (folder, says) in _checkpoints(d, good).items():
        if name in ("only_tag", "model_shapes", "spec_not_json"):
            add(["plot", folder, "--out", d / "o.png"], 1, says)
            add(["export-nir", "--checkpoint", folder, "-o", d / "o.nir"], 1, says)
    for path in (d / "garbage.pt", d / "garbage.nir"):
        add(["plot", path, "--out", d / "o.png"], 1, "refused by weights_only loading")
    add(["import-nir", d / "garbage.nir", "-o", d / "o.json"], 1, "not a readable NIR file")
    add(["import-nir", d / "nowhere.nir", "-o", d / "o.json"], 1)
    for opt, value in [("--T", "0"), ("--dt", "nan"), ("--input-shape", "-1")]:
        add(["import-nir", d / "garbage.nir", "-o", d / "o.json", opt, value], 2, f"argument {opt}:")
    for opt, value in [("--dt", "-1"), ("--dt", "inf"), ("--seed", "-1")]:
        add(["export-nir", spec, "-o", d / "o.nir", opt, value], 2, f"argument {opt}:")
    plan = ["plan", spec, "--batch-size", "8", "--microbatches", "2"]
    for opt, value in [("--stages", "99999999999999999999"), ("--stages", "0"), ("--T", "0"), ("--repeats", "0"),
                       ("--data-parallel", "-1")]:
        add([*plan, opt, value] if opt == "--stages" else [*plan, "--stages", "1", opt, value], 2, f"argument {opt}:")
    add(["plan", spec, "--stages", "1", "--batch-size", "8", "--microbatches", "3"], 1, "does not split into 3")
    add(["check", "no_such_plugin_anywhere"], 1, "neither an installed distribution nor an importable module")
    add(["check", "no_such_plugin_anywhere", "--max-examples", "0"], 2, "argument --max-examples:")
    add(["nosuchcommand"], 2)
    add([], 2)
    return cases


@pytest.mark.slow  # a child process
def test_no_hostile_cli_input_gives_a_traceback_or_a_signal_death(tmp_path: Path) -> None:
    cases = _corpus(tmp_path)
    assert len(cases) >= 400
    results = run_cases(tmp_path, cases)
    failures = []
    for case, got in zip(cases, results):
        why = []
        if got["escaped"]:
            why.append(f"escaped main: {got['escaped']}")
        if got["code"] not in ALLOWED or (case["code"] is not None and got["code"] != case["code"]):
            why.append(f"exit {got['code']} (expected {case['code'] if case['code'] is not None else ALLOWED})")
        if "Traceback" in got["stderr"]:
            why.append("printed a traceback")
        if case["says"] and case["says"] not in got["stderr"]:
            why.append(f"does not say {case['says']!r}")
        if why:
            failures.append(f"{' '.join(case['argv'])[:300]}\n    " + "; ".join(why)
                            + f"\n    stderr: {got['stderr'][-400:]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures[:15])
