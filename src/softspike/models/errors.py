"""The errors a spec can give: every problem with its JSON path and a plain reason."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from softspike.core.errors import SoftspikeError
from softspike.core.params import bound_reason

#: Fields whose value is a union discriminated by "type": a pydantic error path names the tag after them.
UNION_FIELDS = frozenset({"neuron", "surrogate", "encoder", "readout"})


class SpecError(SoftspikeError, ValueError):
    """A spec that cannot be used: `problems` holds one `path: reason` line per error."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(f"{source}: {self.problems[0]}")
        else:
            super().__init__(f"{source}: {len(self.problems)} problems\n  " + "\n  ".join(self.problems))


def join_path(parts: Iterable[str | int]) -> str:
    """`("layers", 3, "neuron", "tau")` -> `layers[3].neuron.tau`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


def _strip_tags(loc: tuple[str | int, ...], data: Any) -> tuple[list[str | int], Any]:
    """Drop the union tags pydantic puts in error paths, walking the input beside the path.

    A tag follows each step into a union-typed value (a list item of `layers`, or one of
    UNION_FIELDS) and equals that value's "type"."""
    parts: list[str | int] = []
    cur: Any = data
    in_union = False
    for part in loc:
        if in_union and isinstance(cur, dict) and part == cur.get("type"):
            in_union = False
            continue
        parts.append(part)
        in_union = False
        if isinstance(cur, dict) and isinstance(part, str) and part in cur:
            in_union = part in UNION_FIELDS
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            in_union = len(parts) >= 2 and parts[-2] == "layers"
            cur = cur[part]
        else:
            cur = None
    return parts, cur


def _kind(parts: list[str | int]) -> str:
    last = parts[-1] if parts else ""
    return last if isinstance(last, str) and last in UNION_FIELDS else "layer"


def _unknown_field(parts: list[str | int], model_fields: Sequence[str] | None) -> str:
    name = str(parts[-1])
    if not model_fields:
        return "unknown field"
    close = difflib.get_close_matches(name, list(model_fields), n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown field{hint} (allowed: {', '.join(model_fields)})"


_PLAIN = {
    "missing": "required field is missing",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "finite_number": "must be a finite number",
    "none_required": "must be null",
    "string_too_short": "must not be empty",
}


def plain_reason(err: dict[str, Any], parts: list[str | int], fields_at: Any) -> str:
    """A plain reason for one pydantic error."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "?")
        shown = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"must be {op} {shown}" + (bound_reason(ctx.get("ge"), parts[-1] if parts else None))
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"must have at least {n} item{'s' if n != 1 else ''}"
    if kind == "too_long":
        n = ctx.get("max_length", 0)
        return f"must have at most {n} items"
    if kind == "extra_forbidden":
        return _unknown_field(parts, fields_at)
    if kind == "union_tag_invalid":
        tags = [t.strip().strip("'") for t in str(ctx.get("expected_tags", "")).split(",") if t.strip()]
        tag = str(ctx.get("tag", ""))
        close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {_kind(parts)} type {tag!r}{hint} (known: {', '.join(tags)})"
    if kind == "union_tag_not_found":
        return f"the {_kind(parts)} needs a \"type\" field"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}"
    return _PLAIN.get(kind, str(err.get("msg", kind)))


def _fields_at(model_root: Any, data: Any, parts: list[str | int]) -> list[str] | None:
    """The field names allowed where an unknown field was found (for 'did you mean')."""
    from softspike.models.spec import fields_for

    parent: Any = data
    for part in parts[:-1]:
        if isinstance(parent, dict) and isinstance(part, str):
            parent = parent.get(part)
        elif isinstance(parent, list) and isinstance(part, int) and 0 <= part < len(parent):
            parent = parent[part]
        else:
            return None
    where = parts[-2] if len(parts) >= 2 else None
    return fields_for(model_root, parent, where)


def _shown(value: Any) -> str:
    """A short text for a bad value: its repr cut to 60 characters; an integer too long to print
    (Python refuses int -> str past 4,300 digits) by its size."""
    if isinstance(value, (dict, list)):
        return type(value).__name__
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {math.floor(value.bit_length() * math.log10(2)) + 1} digits"
    return repr(value)[:60]


def problems_from(err: ValidationError, data: Any, model_root: Any = None) -> list[str]:
    """One `path: reason (got value)` line per error of `err`, raised on input `data`."""
    lines = []
    for e in err.errors():
        parts, _ = _strip_tags(tuple(e["loc"]), data)
        fields = _fields_at(model_root, data, parts) if e["type"] == "extra_forbidden" else None
        reason = plain_reason(dict(e), parts, fields)
        got = e.get("input")
        shown = ""
        # A cross-field validator's input is the whole object, which the path already names and its
        # message already quotes: "(got dict)" would add nothing.
        whole = e["type"] in ("value_error", "assertion_error") and isinstance(got, dict)
        if not whole and e["type"] not in ("missing", "extra_forbidden", "union_tag_invalid", "union_tag_not_found",
                                           "too_short"):
            shown = f" (got {_shown(got)})"
        line = f"{join_path(parts)}: {reason}{shown}"
        if line not in lines:
            lines.append(line)
    return lines
