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


def as_array(value: Any) -> np.ndarray:
    """A NIR parameter (numpy array, torch tensor or number, as writers leave them) as float64 numpy."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def uniform(value: Any, what: str, where: str) -> float:
    """The single value of a per-neuron NIR parameter; softspike keeps one value per layer."""
    arr = as_array(value)
    if arr.size == 0:
        raise NIRError(f"{where}: parameter {what} is empty")
    first = float(arr.reshape(-1)[0])
    if not np.all(np.isfinite(arr)):
        raise NIRError(f"{where}: parameter {what} has non-finite values")
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
