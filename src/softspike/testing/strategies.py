"""hypothesis strategies for shapes, finite values and a plugin's own parameters."""

from __future__ import annotations

from typing import Any

import annotated_types as at
import torch
from hypothesis import strategies as st
from pydantic import BaseModel

#: Lower bound used for an unbounded-below parameter, and how far above a lower bound we draw.
SPAN = 10.0


def shapes(min_dims: int = 1, max_dims: int = 3, max_side: int = 5) -> st.SearchStrategy[tuple[int, ...]]:
    """Small tensor shapes (every side >= 1)."""
    return st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


@st.composite
def inputs(draw: st.DrawFn, shape: tuple[int, ...], low: float = -3.0, high: float = 3.0,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A tensor of the given shape with finite values in [low, high] (exact zeros included)."""
    n = 1
    for s in shape:
        n *= s
    values = draw(st.lists(
        st.one_of(st.just(0.0), st.floats(low, high, allow_nan=False, allow_infinity=False, width=32)),
        min_size=n, max_size=n,
    ))
    return torch.tensor(values, dtype=dtype).reshape(shape)


def _bounds(meta: list[Any]) -> tuple[float | None, float | None, bool, bool]:
    lo = hi = None
    lo_open = hi_open = False
    for m in meta:
        if isinstance(m, at.Gt):
            lo, lo_open = float(m.gt), True  # type: ignore[arg-type]
        elif isinstance(m, at.Ge):
            lo = float(m.ge)  # type: ignore[arg-type]
        elif isinstance(m, at.Lt):
            hi, hi_open = float(m.lt), True  # type: ignore[arg-type]
        elif isinstance(m, at.Le):
            hi = float(m.le)  # type: ignore[arg-type]
    return lo, hi, lo_open, hi_open


def _field_strategy(annotation: Any, meta: list[Any], default: Any) -> st.SearchStrategy[Any]:
    if annotation is bool:
        return st.booleans()
    if annotation in (float, int):
        lo, hi, lo_open, hi_open = _bounds(meta)
        if lo is None and hi is None:
            lo, hi = -SPAN, SPAN
        elif lo is None:
            lo = hi - 2 * SPAN  # type: ignore[operator]
        elif hi is None:
            # Keep well inside the open bound: a τ of 1e-300 is legal but no one's neuron.
            lo, hi = (lo + 0.05 * max(1.0, abs(lo)) if lo_open else lo), lo + SPAN
        assert lo is not None and hi is not None
        if annotation is int:
            return st.integers(int(lo) + (1 if lo_open else 0), int(hi) - (1 if hi_open else 0))
        return st.floats(lo, hi, exclude_min=lo_open, exclude_max=hi_open, allow_nan=False)
    return st.just(default)


@st.composite
def params_for(draw: st.DrawFn, model: type[BaseModel]) -> dict[str, Any]:
    """Valid parameters for a plugin's params model: bounded numbers drawn, the rest at defaults."""
    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        default = None if f.is_required() else f.get_default(call_default_factory=True)
        if f.is_required() or draw(st.booleans()):
            out[name] = draw(_field_strategy(f.annotation, list(f.metadata), default))
    try:
        model(**out)
    except Exception:
        return {}  # a combination the model's own validators reject: fall back to the defaults
    return out
