"""`softspike validate SPEC`: check a spec; one summary line, or every problem by its JSON path."""

from __future__ import annotations

import argparse
from typing import Any

from softspike.models.builder import build, count_parameters
from softspike.models.load import load_spec


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a network spec (a file or a zoo name)")
    p.add_argument("spec", metavar="SPEC", help="a spec file, or the name of a zoo spec (e.g. mnist_fc)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    checked = load_spec(args.spec)
    spec = checked.spec
    params = count_parameters(build(checked))
    print(
        f"{checked.source}: ok: network {spec.name!r}, input {list(spec.input_shape)}, T={spec.T}, "
        f"encoder {spec.encoder.type}, {len(checked.layers)} layers, {checked.num_classes} outputs, "
        f"{params:,} parameters"
    )
    return 0
