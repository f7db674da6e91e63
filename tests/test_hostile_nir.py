"""Hostile NIR files: `softspike import-nir` on crafted files ends with exit 1 (or 2) and one line naming
the metadata path or the node and field, never a traceback, never a silent import of values the
network cannot hold (NaN, infinity, complex, text, float32 overflow, time constants Euler cannot step).

The files are a small softspike export edited with h5py; every case runs through `softspike.cli.main`
in ONE child process (test_hostile_cli's `run_cases`), which reports per case the exit status, anything
that escaped `main` and the stderr, and whose death by a signal names the case it was running."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from softspike.models.builder import build
from softspike.models.load import check_spec
from softspike.nir import export_nir, write_nir
from test_hostile_cli import run_cases

SPEC: dict[str, Any] = {
    "name": "h", "input_shape": [1, 4, 4], "T": 2, "encoder": {"type": "constant"},
    "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3},
               {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}}],
}
ROOT = "node"
META = f"{ROOT}/metadata"
LINEAR, LIF, FLATTEN = f"{ROOT}/nodes/layers_1", f"{ROOT}/nodes/layers_2", f"{ROOT}/nodes/layers_0"
Edit = Callable[[h5py.File], None]


def _put(path: str, value: Any) -> Edit:
    def edit(f: h5py.File) -> None:
        del f[path]
        f[path] = value
    return edit


def _stored(**change: Any) -> Edit:
    """Rewrite the exported spec's JSON text with some fields changed (json writes inf as Infinity)."""
    def edit(f: h5py.File) -> None:
        spec = json.loads(f[f"{META}/softspike_spec"][()])
        spec.update(change)
        _put(f"{META}/softspike_spec", json.dumps(spec))(f)
    return edit


def _scaled(path: str, factor: Any) -> Edit:
    def edit(f: h5py.File) -> None:
        _put(path, f[path][()] * factor)(f)
    return edit


def _nan_at(path: str) -> Edit:
    def edit(f: h5py.File) -> None:
        value = f[path][()].copy()
        value.reshape(-1)[1] = np.nan
        _put(path, value)(f)
    return edit


# name -> (edit, extra arguments, exit status, what stderr must say)
CASES: dict[str, tuple[Edit, list[str], int, str]] = {
    "T_text": (_stored(T="abc"), [], 1, "metadata softspike_spec.T: Input should be a valid integer"),
    "T_list": (_stored(T=[3]), [], 1, "metadata softspike_spec.T: Input should be a valid integer"),
    "T_object": (_stored(T={}), [], 1, "metadata softspike_spec.T: Input should be a valid integer"),
    "T_infinity": (_stored(T=float("inf")), [], 1, "metadata softspike_spec.T: Input should be a valid integer"),
    "T_zero": (_stored(T=0), [], 1, "metadata softspike_spec.T: Input should be greater than or equal to 1"),
    "shape_text": (_stored(input_shape="ab"), [], 1, "metadata softspike_spec.input_shape: Input should be a valid"),
    "shape_number": (_stored(input_shape=5), [], 1, "metadata softspike_spec.input_shape: Input should be a valid"),
    "shape_nested": (_stored(input_shape=[[4]]), [], 1, "metadata softspike_spec.input_shape[0]: Input should be"),
    "shape_infinity": (_stored(input_shape=[float("inf")]), [], 1, "metadata softspike_spec.input_shape[0]:"),
    "dt_text": (_put(f"{META}/softspike_dt", "abc"), [], 1, "metadata softspike_dt: Input should be a valid number"),
    "dt_array": (_put(f"{META}/softspike_dt", np.array([1e-3, 2e-3])), [], 1, "metadata softspike_dt: Input should"),
    "dt_negative": (_put(f"{META}/softspike_dt", -1e-3), [], 1, "metadata softspike_dt: Input should be greater"),
    "spec_not_json": (_put(f"{META}/softspike_spec", "{not json"), [], 1, "softspike_spec: Value error, is not valid"),
    "spec_number": (_put(f"{META}/softspike_spec", 5.0), [], 1, "should be the spec as JSON text, got float"),
    "spec_list": (_put(f"{META}/softspike_spec", "[1, 2]"), [], 1, "should hold a JSON object, got list"),
    "weight_text": (_put(f"{LINEAR}/weight", np.full((3, 16), "x", dtype="S1")), [], 1,
                    "node 'layers_1' (Affine): weight holds text, not numbers"),
    "weight_nan": (_nan_at(f"{LINEAR}/weight"), [], 1, "node 'layers_1' (Affine): weight has NaN values (1 of 48)"),
    "weight_inf": (_scaled(f"{LINEAR}/weight", np.inf), [], 1, "node 'layers_1' (Affine): weight has"),
    "weight_1e300": (_scaled(f"{LINEAR}/weight", 1e300), [], 1, "weight has values beyond float32"),
    "weight_complex": (_scaled(f"{LINEAR}/weight", 1 + 1j), [], 1,
                       "node 'layers_1' (Affine): weight holds complex numbers"),
    "bias_nan": (_nan_at(f"{LINEAR}/bias"), [], 1, "node 'layers_1' (Affine): bias has NaN values"),
    "bias_inf": (_scaled(f"{LINEAR}/bias", np.inf), [], 1, "node 'layers_1' (Affine): bias has"),
    "threshold_nan": (_nan_at(f"{LIF}/v_threshold"), [], 1, "node 'layers_2' (LIF): v_threshold has NaN values"),
    "r_complex": (_scaled(f"{LIF}/r", 1j), [], 1, "node 'layers_2' (LIF): r holds complex numbers"),
    "tau_1e-300": (_put(f"{LIF}/tau", np.full(3, 1e-300)), [], 1, "tau = 1e-300 s is 1e-297 time steps"),
    "tau_1e300": (_put(f"{LIF}/tau", np.full(3, 1e300)), [], 1, "tau has values beyond float32"),
    "tau_1e35": (_put(f"{LIF}/tau", np.full(3, 1e35)), [], 1, "1/tau underflows in float32"),
    "tau_zero": (_put(f"{LIF}/tau", np.zeros(3)), [], 1, "tau must be positive, got 0 s"),
    "tau_short": (_put(f"{LIF}/tau", np.full(3, 8e-4)), [], 1, "or import it as it is with --allow-short-tau"),
    "tau_short_allowed": (_put(f"{LIF}/tau", np.full(3, 8e-4)), ["--allow-short-tau"], 0, ""),
    "tau_half_step": (_put(f"{LIF}/tau", np.full(3, 5e-4)), ["--allow-short-tau"], 1, "is unstable for a time"),
    # nir.read itself computes Flatten's output type from these: refused as an unreadable file
    "flatten_dim_text": (_put(f"{FLATTEN}/start_dim", "abc"), [], 1, "not a readable NIR file (TypeError"),
    "flatten_dim_half": (_put(f"{FLATTEN}/start_dim", 0.5), [], 1, "not a readable NIR file (TypeError"),
}


def _corpus(d: Path) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    checked = check_spec(SPEC)
    good = d / "good.nir"
    write_nir(export_nir(checked, build(checked)), good)
    cases = [{"argv": ["import-nir", str(good), "-o", str(d / "good.json")], "code": 0, "says": ""}]
    for name, (edit, extra, code, says) in CASES.items():
        path = d / f"{name}.nir"
        shutil.copy(good, path)
        with h5py.File(path, "r+") as f:
            edit(f)
        cases.append({"argv": ["import-nir", str(path), "-o", str(d / f"{name}.json"), *extra], "code": code,
                      "says": says})
    return cases


def test_no_hostile_nir_file_gives_a_traceback_or_a_silent_import(tmp_path: Path) -> None:
    cases = _corpus(tmp_path)
    results = run_cases(tmp_path, cases)
    failures = []
    for case, got in zip(cases, results, strict=True):
        lines = got["stderr"].strip().splitlines()
        why = [f"escaped main: {got['escaped']}"] if got["escaped"] else []
        if got["code"] != case["code"]:
            why.append(f"exit {got['code']} (expected {case['code']})")
        if "Traceback" in got["stderr"] or len(lines) > (1 if case["code"] else 0):
            why.append(f"{len(lines)} lines on stderr (expected one line for an error, none otherwise)")
        if case["says"] not in got["stderr"]:
            why.append(f"does not say {case['says']!r}")
        if why:
            failures.append(f"{case['argv'][1]}: " + "; ".join(why) + f"\n    stderr: {got['stderr'][-400:]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)
