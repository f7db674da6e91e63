"""`softspike info [--json]`: versions, threads and which multi-step path runs here (for bug reports)."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

import torch


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="versions, threads and the fused multi-step path in use")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(run=run)


def collect() -> dict[str, Any]:
    import softspike
    from softspike.core.fused import backend_info

    registry = softspike.get_registry()
    return {
        "softspike": softspike.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda_available": torch.cuda.is_available(),
        "plugins": {kind: len(cat) for kind, cat in registry.catalogs().items()},
        "plugin_errors": len(registry.errors),
        "fused": backend_info(),
    }


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        json.dump(info, sys.stdout, indent=2, default=str)
        print()
        return 0
    fused = info["fused"]
    print(f"softspike {info['softspike']}, torch {info['torch']}, Python {info['python']} on {info['platform']}")
    print(f"CUDA available: {info['cuda_available']}; torch threads: {fused['threads']}")
    print("plugins: " + ", ".join(f"{n} {k}s" for k, n in info["plugins"].items())
          + (f" ({info['plugin_errors']} skipped: see `softspike plugins`)" if info["plugin_errors"] else ""))
    print(f"multi-step path by default: {fused['default']}")
    for name in ("native", "torch", "compiled", "reference"):
        entry = fused[name]
        state = "available" if entry["available"] else f"unavailable ({entry.get('status', '')})"
        print(f"  {name:<10} {state}: {entry['scope']}")
    return 0
