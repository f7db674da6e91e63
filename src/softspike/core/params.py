"""Base of every parameter schema: strict pydantic models whose errors name the field and the fix."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from softspike.core.errors import ParameterError

M = TypeVar("M", bound=BaseModel)


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
            reason = e["msg"]
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
