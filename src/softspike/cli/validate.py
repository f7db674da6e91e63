"""`softspike validate SPEC`: check a spec; one summary line, or every problem by its JSON path."""

from __future__ import annotations

import argparse
from typing import Any

from softspike.cli.options import int_option
from softspike.models.limits import check_memory, format_size, machine_memory, parse_size
from softspike.models.load import CheckedSpec, load_spec
from softspike.train.config import TrainConfig


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_limit_options(p: argparse.ArgumentParser, batch_size: bool = True) -> None:
    """`--max-memory SIZE` (and `--batch-size N`, where the command has no batch size of its own)."""
    p.add_argument("--max-memory", type=_size, metavar="SIZE",
                   help="refuse a network whose parameters and activations, or an .npz whose arrays, need more "
                        "(e.g. 8GiB; default: the machine's memory)")
    if batch_size:
        p.add_argument("--batch-size", type=int_option("batch_size"), default=TrainConfig().batch_size, metavar="N",
                       help="batch size the memory check assumes (default %(default)s, as train)")


def check_limit(checked: CheckedSpec, batch_size: int, max_memory: int | None, device: str = "cpu") -> str:
    """Refuse (SpecError) a network over the memory limit, before anything is built; else a summary."""
    limit = max_memory if max_memory is not None else machine_memory(device)
    est = check_memory(checked, batch_size, limit)
    return f"about {format_size(est.total)} to train at batch size {batch_size} (limit {format_size(limit)})"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a network spec (a file or a zoo name)")
    p.add_argument("spec", metavar="SPEC", help="a spec file, or the name of a zoo spec (e.g. mnist_fc)")
    add_limit_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    checked = load_spec(args.spec)
    memory = check_limit(checked, args.batch_size, args.max_memory)
    spec = checked.spec
    print(
        f"{checked.source}: ok: network {spec.name!r}, input {list(spec.input_shape)}, T={spec.T}, "
        f"encoder {spec.encoder.type}, {len(checked.layers)} layers, {checked.num_classes} outputs, "
        f"{checked.num_parameters:,} parameters, {memory}"
    )
    return 0
