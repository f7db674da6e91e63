"""The graph metadata a softspike export writes, read back through a strict pydantic model.

A NIR file is data from anywhere: its metadata may hold any value under any key. What `import_nir`
reads from it (dt, and the spec's name, T, input shape, encoder and readout) is validated here, and
every problem is reported with its path (`metadata softspike_spec.T: Input should be a valid integer`).
Other writers' metadata keys are left alone.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from softspike.core.params import format_validation_error
from softspike.nir.common import META_DT, META_SPEC, NIRError

PositiveInt = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    # extra="ignore": a stored spec carries its layers (the graph's nodes are read instead) and
    # a graph carries other writers' metadata; neither is softspike's to refuse.
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True,
                              use_attribute_docstrings=True)


class StoredSpec(_Strict):
    """The parts of the exported spec (`softspike_spec`, JSON text) that import reads; the spec as a whole
    is checked again once built from the graph."""

    name: str | None = None
    """The spec's name."""
    description: str | None = None
    """The spec's description."""
    input_shape: Annotated[list[PositiveInt], Field(min_length=1, max_length=3)] | None = None
    """One sample's shape: [features] or [channels, height, width], positive integers."""
    T: PositiveInt | None = None
    """Time steps per sample, a positive integer."""
    encoder: dict[str, Any] | None = None
    """The encoder spec (checked with the rest of the spec)."""
    readout: dict[str, Any] | None = None
    """The readout spec (checked with the rest of the spec)."""


class GraphMetadata(_Strict):
    """A NIR graph's metadata, as far as softspike reads it."""

    softspike_spec: StoredSpec | None = None
    """The exported spec, as JSON text of an object."""
    softspike_dt: Annotated[float, Field(gt=0)] | None = None
    """Seconds per time step of the export, a positive finite number."""

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, data: Any) -> Any:
        """HDF5 hands back numpy scalars, 0-d arrays and bytes: plain Python values before validating."""
        if not isinstance(data, dict):
            return data
        return {k: _plain(v) for k, v in data.items() if k in (META_SPEC, META_DT)}

    @field_validator("softspike_spec", mode="before")
    @classmethod
    def _parse_spec(cls, text: Any) -> Any:
        if text is None:
            return None
        if not isinstance(text, str):
            raise ValueError(f"should be the spec as JSON text, got {type(text).__name__}")
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise ValueError(f"is not valid JSON ({err})") from None
        if not isinstance(value, dict):
            raise ValueError(f"should hold a JSON object, got {type(value).__name__}")
        return value


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = value.item() if value.ndim == 0 else value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


def read_metadata(meta: Any) -> GraphMetadata:
    """The graph's softspike metadata, validated; NIRError lists each problem with its path."""
    if meta is None:
        return GraphMetadata()
    if not isinstance(meta, dict):
        raise NIRError(f"the graph's metadata should be a mapping, got {type(meta).__name__}")
    try:
        return GraphMetadata.model_validate(meta)
    except ValidationError as err:
        problems = [p if len(p) <= 300 else p[:300] + "...)" for p in format_validation_error(err)]
        raise NIRError("; ".join(f"metadata {p}" for p in problems)) from None
