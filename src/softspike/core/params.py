"""Base of every parameter schema: strict pydantic models whose errors name the field and the fix."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from softspike.core.errors import ParameterError

M = TypeVar("M", bound=BaseModel)

#: float32's smallest normal number, 1.18e-38: a positive parameter below it rounds to 0 (or to a
#: subnormal that GPUs flush to 0) once a network's float32 arithmetic uses it.
FLOAT32_TINY = 1.1754943508222875e-38
#: The smallest stable time constant of an Euler-step leak V <- V + (X - V) / tau: below 1/2,
#: |1 - 1/tau| > 1, every step amplifies V and a soft-reset membrane runs to inf.
MIN_TAU = 0.5


def bound_reason(bound: object, field: object) -> str:
    """Why a lower bound of float32 arithmetic is there (for the error of a value below it), or ''."""
    if bound == FLOAT32_TINY:
        return ", float32's smallest normal number: a smaller value rounds to 0 in float32"
    if bound == MIN_TAU and isinstance(field, str) and field.startswith("tau"):
        return ": below it the Euler leak |1 - 1/tau| > 1 amplifies V at every step, and V runs to inf"
    return ""


class Params(BaseModel):
    """Strict base: unknown keys, NaN/inf and invalid defaults are all rejected."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        validate_default=True,
        use_attribute_docstrings=True,
        frozen=True,
    )


def format_validation_error(err: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem: `path.to.field: reason (got value)`."""
    lines = []
    for e in err.errors():
        path = prefix
        for part in e["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{part}" if path else str(part)
        got = e.get("input")
        shown = "" if e["type"] in ("missing", "extra_forbidden") else f" (got {got!r})"
        if e["type"] == "extra_forbidden":
            reason = "unknown parameter"
        else:
            ctx = e.get("ctx") or {}
            reason = e["msg"] + bound_reason(ctx.get("ge"), e["loc"][-1] if e["loc"] else None)
        lines.append(f"{path or '<root>'}: {reason}{shown}")
    return lines


def validate_params(model: type[M], owner: str, params: dict[str, Any]) -> M:
    """Validate `params` against `model`; raise ParameterError naming `owner` and each bad field."""
    try:
        return model(**params)
    except ValidationError as err:
        allowed = ", ".join(model.model_fields) or "none"
        lines = format_validation_error(err)
        raise ParameterError(
            f"invalid parameters for {owner}:\n  " + "\n  ".join(lines) + f"\n  (accepted parameters: {allowed})"
        ) from None
