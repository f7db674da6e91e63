"""`softspike plugins [--json]`: every registered neuron, surrogate and encoder, and broken plugins."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from softspike.core.registry import get_registry


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plugins", help="list registered neurons, surrogates and encoders")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(run=run)


def _params_text(params: dict[str, Any]) -> str:
    parts = []
    for name, info in params.items():
        parts.append(f"{name} (required)" if info["required"] else f"{name}={info['default']!r}")
    return ", ".join(parts) or "-"


def run(args: argparse.Namespace) -> int:
    registry = get_registry()
    entries = registry.describe()
    errors = [vars(e) for e in registry.errors]
    if args.json:
        json.dump({"plugins": entries, "errors": errors}, sys.stdout, indent=2, default=str, ensure_ascii=False)
        print()
        return 0
    rows = [(e["kind"], e["name"], e["distribution"], _params_text(e["params"])) for e in entries]
    header = ("KIND", "NAME", "DISTRIBUTION", "PARAMETERS")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for r in [header, *rows]:
        print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    for e in errors:
        print(f"skipped plugin {e['plugin']!r} from {e['distribution']}: {e['error']}", file=sys.stderr)
    return 0
