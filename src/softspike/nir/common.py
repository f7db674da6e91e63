"""What export and import share: the error type, the time step, and reading NIR parameter arrays."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np

from softspike.core.errors import SoftspikeError
from softspike.core.extras import require

#: The default length of one time step in seconds (Norse's default dt as well).
DEFAULT_DT = 1e-3
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Graph metadata written by `export_nir`: the spec as JSON text, and dt.
META_SPEC = "softspike_spec"
META_DT = "softspike_dt"
#: Neuron node metadata: the layer's training-only settings (surrogate, reset gradient) as JSON text.
META_LAYER = "softspike_layer"


class NIRError(SoftspikeError, ValueError):
    """A network or a NIR graph that cannot be converted; the message names the layer or node."""


def nir_module() -> ModuleType:
    """The `nir` package (the `nir` extra), imported when a conversion runs."""
    return require("nir", "nir", "NIR import and export")


def check_dt(dt: float) -> float:
    dt = float(dt)
    if not np.isfinite(dt) or dt <= 0:
        raise NIRError(f"dt (the length of one time step in seconds) must be a positive number, got {dt}")
    return dt


def as_array(value: Any, what: str, where: str) -> np.ndarray:
    """A NIR parameter (numpy array, torch tensor or number, as writers leave them) as float64 numpy.

    A file may hold anything: strings, complex numbers (whose imaginary part a float cast would drop
    in silence), NaN or infinity. Each is refused naming the node and the field."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if value is None:
        raise NIRError(f"{where}: {what} is missing")
    raw = np.asarray(value)
    if raw.dtype.kind == "c":
        raise NIRError(f"{where}: {what} holds complex numbers; NIR parameters are real")
    if raw.dtype.kind not in "biuf":
        raise NIRError(f"{where}: {what} holds {_kind(raw)}, not numbers")
    with np.errstate(over="ignore"):  # float128 beyond float64 becomes inf, refused below
        arr = raw.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = "NaN" if np.isnan(arr).any() else "infinite"
        raise NIRError(f"{where}: {what} has {bad} values ({int((~np.isfinite(arr)).sum())} of {arr.size})")
    if arr.size and float(np.abs(arr).max()) > FLOAT32_MAX:  # the network computes in float32
        raise NIRError(f"{where}: {what} has values beyond float32 (up to {np.abs(arr).max():.3g}; the largest "
                       f"float32 is {FLOAT32_MAX:.3g})")
    return arr


def _kind(arr: np.ndarray) -> str:
    names = {"U": "text", "S": "text", "O": "Python objects", "V": "raw records", "M": "dates", "m": "durations"}
    return names.get(arr.dtype.kind, f"values of type {arr.dtype}")


def as_int(value: Any, what: str, where: str) -> list[int]:
    """A NIR integer parameter (stride, padding, dims; a number or an array) as Python ints."""
    arr = as_array(value, what, where).reshape(-1)
    if arr.size == 0 or not np.all(arr == np.round(arr)) or np.any(np.abs(arr) > 2**31):
        raise NIRError(f"{where}: {what} should be whole numbers, got {arr.tolist()[:8]}")
    return [int(v) for v in arr]


def uniform(value: Any, what: str, where: str) -> float:
    """The single value of a per-neuron NIR parameter; softspike keeps one value per layer."""
    arr = as_array(value, what, where)
    if arr.size == 0:
        raise NIRError(f"{where}: parameter {what} is empty")
    first = float(arr.reshape(-1)[0])
    if not np.allclose(arr, first, rtol=1e-6, atol=0.0):
        raise NIRError(
            f"{where}: parameter {what} differs between neurons (from {arr.min():.6g} to {arr.max():.6g}); "
            "a softspike neuron layer has one value per layer"
        )
    return first


def json_meta(meta: Any, key: str) -> dict[str, Any]:
    """A JSON object stored as text under `key` of a NIR metadata dict ({} when absent or unreadable)."""
    text = (meta or {}).get(key) if isinstance(meta, dict) else None
    if isinstance(text, np.ndarray):
        text = text.item()
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if not isinstance(text, str):
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
