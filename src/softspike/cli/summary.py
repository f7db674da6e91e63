"""`softspike summary SPEC`: a table of layers, output shapes and parameter counts."""

from __future__ import annotations

import argparse
from typing import Any

from softspike.models.builder import build, count_parameters
from softspike.models.load import load_spec


def add_parser(sub: Any) -> None:
    p = sub.add_parser("summary", help="table of a spec's layers, output shapes and parameters")
    p.add_argument("spec", metavar="SPEC", help="a spec file, or the name of a zoo spec")
    p.set_defaults(run=run)


def _describe(layer: Any) -> str:
    if layer.type == "neuron":
        params = ", ".join(f"{k}={v}" for k, v in layer.neuron.model_dump().items() if k != "type")
        reset = "soft" if layer.v_reset is None else f"v_reset={layer.v_reset}"
        gate = layer.surrogate.type if layer.surrogate is not None else "sigmoid"
        return f"{layer.neuron.type}({params}) v_th={layer.v_threshold} {reset} {gate}"
    keep = {k: v for k, v in layer.model_dump().items() if k not in ("type", "layers") and v is not None}
    return ", ".join(f"{k}={v}" for k, v in keep.items())


def table(arg: str) -> list[tuple[str, str, str, str, str]]:
    checked = load_spec(arg)
    net = build(checked)
    modules = dict(net.layer_paths)
    rows = []
    for info in checked.layers:
        own = 0 if info.layer.type == "residual" else count_parameters(modules[info.path])
        name = "  " * info.depth + info.path.rsplit(".", 1)[-1]
        shape = "[T, B, " + ", ".join(map(str, info.out_shape)) + "]"
        rows.append((name, info.layer.type, _describe(info.layer), shape, f"{own:,}"))
    spec = checked.spec
    rows.insert(0, ("input", spec.encoder.type, f"T={spec.T}", "[T, B, " + ", ".join(map(str, spec.input_shape)) + "]",
                    "0"))
    rows.append(("total", "", "", "", f"{count_parameters(net):,}"))
    return rows


def run(args: argparse.Namespace) -> int:
    rows = table(args.spec)
    header = ("LAYER", "TYPE", "SETTINGS", "OUTPUT SHAPE", "PARAMS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for i, r in enumerate([header, *rows]):
        if i == len(rows):
            print("-" * (sum(widths) + 8))
        cells = [f"{cell:<{w}}" for cell, w in zip(r[:4], widths)]
        print("  ".join([*cells, f"{r[4]:>{widths[4]}}"]))
    return 0
