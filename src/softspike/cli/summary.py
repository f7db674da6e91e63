"""`softspike summary SPEC`: every part of a spec with all its settings, output shapes, parameter
counts and activation sizes; computed from the spec alone (nothing is built)."""

from __future__ import annotations

import argparse
from typing import Any

from softspike.cli.validate import add_limit_options, check_limit
from softspike.core.neuron import DEFAULT_SURROGATE
from softspike.core.registry import get_registry
from softspike.models.layers import numel, part_params
from softspike.models.limits import BYTES_PER_VALUE, format_size
from softspike.models.load import load_spec

HEADER = ("LAYER", "TYPE", "SETTINGS", "OUTPUT SHAPE", "PARAMS", "ACTIVATIONS")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("summary", help="table of a spec's layers, settings, output shapes, parameters and memory")
    p.add_argument("spec", metavar="SPEC", help="a spec file, or the name of a zoo spec")
    add_limit_options(p)
    p.set_defaults(run=run)


def _call(name: str, params: dict[str, Any]) -> str:
    return f"{name}(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def describe_part(part: Any) -> str:
    """A tagged spec part (neuron, surrogate, encoder, readout) as `type(param=value, ...)`."""
    return _call(part.type, part_params(part))


def _describe(layer: Any) -> str:
    if layer.type == "neuron":
        if layer.surrogate is not None:
            gate = describe_part(layer.surrogate)
        else:  # what the neuron falls back to: the default gate with its defaults
            gate = _call(DEFAULT_SURROGATE, get_registry().surrogates.get(DEFAULT_SURROGATE).defaults())
        reset = "v_reset=None (soft)" if layer.v_reset is None else f"v_reset={layer.v_reset}"
        return (f"{describe_part(layer.neuron)} v_threshold={layer.v_threshold} {reset} {gate} "
                f"detach_reset={layer.detach_reset} reset_grad={layer.reset_grad}")
    keep = {k: getattr(layer, k) for k in type(layer).model_fields if k not in ("type", "layers")}
    return ", ".join(f"{k}={v}" for k, v in keep.items() if v is not None)


def _shape(shape: Any) -> str:
    return "[T, B, " + ", ".join(map(str, shape)) + "]"


def table(arg: str, batch_size: int, max_memory: int | None = None) -> tuple[list[tuple[str, ...]], str]:
    """The rows (input, every layer, readout, total) and the memory line; SpecError over the limit."""
    checked = load_spec(arg)
    memory = check_limit(checked, batch_size, max_memory)
    spec = checked.spec
    per_sample = spec.T * batch_size * BYTES_PER_VALUE
    input_acts = per_sample * numel(checked.step_shape)
    rows: list[tuple[str, ...]] = [("input", "encoder", f"{describe_part(spec.encoder)} T={spec.T}",
                                    _shape(checked.step_shape), f"{checked.encoder_params:,}", format_size(input_acts))]
    total_acts = input_acts
    for info in checked.layers:
        name = "  " * info.depth + info.path.rsplit(".", 1)[-1]
        acts = info.activations * per_sample
        total_acts += acts
        rows.append((name, info.layer.type, _describe(info.layer), _shape(info.out_shape), f"{info.params:,}",
                     format_size(acts)))
    rows.append(("readout", spec.readout.type, describe_part(spec.readout), f"[B, {checked.num_classes}]", "0", "0 B"))
    rows.append(("total", "", "", "", f"{checked.num_parameters:,}", format_size(total_acts)))
    return rows, f"{spec.name}: {memory}; activations are for batch size {batch_size}"


def run(args: argparse.Namespace) -> int:
    rows, memory = table(args.spec, args.batch_size, args.max_memory)
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    for i, r in enumerate([HEADER, *rows]):
        if i == len(rows):
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
        cells = [f"{cell:<{w}}" for cell, w in zip(r[:4], widths)]
        print("  ".join([*cells, *(f"{cell:>{w}}" for cell, w in zip(r[4:], widths[4:]))]))
    print(memory)
    return 0
