"""Option types shared by the subcommands: every number and device is checked by argparse, before
torch sees it, against the bounds of the `TrainConfig` field it feeds (one source for both paths).

A bad value ends the command with argparse's usage line and exit status 2, naming the option:

    softspike train: error: argument --lr: 1e+300 is out of range: give a number > 0 and <= 1000
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from annotated_types import Ge, Gt, Le, Lt

from softspike.train.config import MAX_COUNT, TrainConfig, check_device


def _bounds(field: str) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for m in TrainConfig.model_fields[field].metadata:
        for cls, op, attr in ((Ge, ">=", "ge"), (Gt, ">", "gt"), (Le, "<=", "le"), (Lt, "<", "lt")):
            if isinstance(m, cls):
                out.append((op, getattr(m, attr)))
    return out


def _in_range(value: float, bounds: list[tuple[str, float]]) -> bool:
    checks = {">=": lambda a, b: a >= b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}
    return all(checks[op](value, limit) for op, limit in bounds)


def _number_type(field: str, kind: type[int] | type[float], bounds: list[tuple[str, float]]) -> Callable[[str], Any]:
    allowed = " and ".join(f"{op} {limit if isinstance(limit, int) else format(limit, 'g')}" for op, limit in bounds)
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str) -> int | float:
        shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"
        try:
            value = kind(text)
        except ValueError:  # also Python's limit on the digits of an int
            raise argparse.ArgumentTypeError(f"{shown!r} is not {noun}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{shown!r} is not a finite number")
        if not _in_range(value, bounds):
            raise argparse.ArgumentTypeError(f"{shown} is out of range: give {noun} {allowed}")
        return value

    parse.__name__ = field  # what argparse names in its own messages
    return parse


def int_option(field: str) -> Callable[[str], Any]:
    """An argparse type for the integer `TrainConfig` field `field`, with its bounds."""
    return _number_type(field, int, _bounds(field))


def float_option(field: str) -> Callable[[str], Any]:
    """An argparse type for the float `TrainConfig` field `field`: finite, within its bounds."""
    return _number_type(field, float, _bounds(field))


def int_range(low: int, high: int = MAX_COUNT, name: str = "count") -> Callable[[str], Any]:
    """An argparse type for a whole number in [low, high], for options that feed no `TrainConfig` field."""
    return _number_type(name, int, [(">=", low), ("<=", high)])


def float_range(low: float, high: float, name: str = "number", low_open: bool = True) -> Callable[[str], Any]:
    """An argparse type for a finite number in (low, high] (or [low, high] with `low_open=False`)."""
    return _number_type(name, float, [(">" if low_open else ">=", low), ("<=", high)])


def file_option(*suffixes: str) -> Callable[[str], str]:
    """An argparse type for an output file whose kind is told by its suffix (`.png`, ...)."""

    def parse(text: str) -> str:
        if not text.lower().endswith(suffixes):
            raise argparse.ArgumentTypeError(f"{text!r}: give a file ending in {', '.join(suffixes)}")
        return text

    parse.__name__ = "file"
    return parse


#: The seed of every command (numpy's seeding range, as `TrainConfig.seed`).
seed_option = int_option("seed")


def device_option(text: str) -> str:
    """An argparse type for `--device`: a device kind softspike runs on (not meta, not a backend stub)."""
    try:
        return check_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def count_option(low: int, high: int) -> Callable[[str], int]:
    """An argparse type for a whole number in [low, high] that is not a training option (e.g. --nproc)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a whole number >= {low} and <= {high}")
        return value

    return parse
