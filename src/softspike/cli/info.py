"""`softspike info [--json]`: versions, threads and the backends that run neurons here (for bug reports).

    softspike info --neuron lif --shape 8,32,1000      why each backend does or does not run that layer
    softspike info --backends --markdown               the docs' tables: the backends, which runs which neuron
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Any

import torch

from softspike.cli.options import device_option

#: The devices and dtypes of the docs' table; CUDA inputs are fake tensors, so no GPU is needed.
TABLE_COLUMNS = tuple((device, dtype) for device in ("cpu", "cuda")
                      for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16))
#: Neurons per time step of the table's layers; "small" is a layer of SMALL neurons.
LARGE, SMALL = 8192, 64
#: Settings beside the defaults that change the backend (the table's extra rows, for LIF).
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("soft reset", {"v_reset": None}),
    ("detach_reset", {"detach_reset": True}),
    ("reset_grad=straight_through", {"reset_grad": "straight_through"}),
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="versions, threads and the multi-step backends in use")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--neuron", help="a registered neuron (default parameters): why each backend does or does not "
                   "run it on the input given by --shape, --dtype and --device")
    p.add_argument("--shape", default="8,32,1000", help="the layer's input [T, B, ...] for --neuron")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64", "float16", "bfloat16"))
    p.add_argument("--device", type=device_option, default="cpu", help="the input's device for --neuron "
                   "(a CUDA input needs no GPU: only its device and dtype are asked)")
    p.add_argument("--backends", action="store_true", help="the table of which backend runs each registered neuron "
                   "per device and dtype (with --markdown: as in docs/backends.md)")
    p.add_argument("--markdown", action="store_true", help="with --backends: print the table as Markdown")
    p.set_defaults(run=run)


def _input(shape: tuple[int, ...], device: str, dtype: torch.dtype) -> torch.Tensor:
    """A tensor the backends' `supports` can read; on a device absent here, a fake one (no data, no GPU)."""
    if torch.device(device).type == "cpu":
        return torch.zeros(shape, dtype=dtype)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        return torch.zeros(shape, dtype=dtype, device=device)


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) < 2 or min(shape) < 1 or max(shape) > 1 << 20:
        raise SystemExit(f"softspike info: --shape is T,B[,...] of positive integers (like 8,32,1000), got {text!r}")
    return shape


def collect(args: argparse.Namespace | None = None) -> dict[str, Any]:
    import softspike
    from softspike.core.registry import backend_info

    registry = softspike.get_registry()
    layer = x = None
    if args is not None and args.neuron:
        layer = registry.neurons.create(args.neuron, step_mode="m")
        x = _input(_parse_shape(args.shape), args.device, getattr(torch, args.dtype))
    else:  # the default answer: a LIF layer of this machine's CPU, float32
        layer = registry.neurons.create("lif", step_mode="m") if "lif" in registry.neurons else None
        x = torch.zeros(8, 32, 1000) if layer is not None else None
    info = backend_info(layer, x)
    info["default"] = next((r["name"] for r in info.get("layer", ()) if r["chosen"]), None)
    return {
        "softspike": softspike.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda_available": torch.cuda.is_available(),
        "plugins": {kind: len(cat) for kind, cat in registry.catalogs().items()} | {"backend": len(registry.backends)},
        "plugin_errors": len(registry.errors),
        "fused": info,
        "layer": None if layer is None or x is None else
        {"neuron": args.neuron if args is not None and args.neuron else "lif", "shape": list(x.shape),
         "dtype": str(x.dtype).replace("torch.", ""), "device": x.device.type},
    }


def backend_table(registry: Any) -> list[list[str]]:
    """Rows [neuron, settings, backend per column of TABLE_COLUMNS]: what `auto` runs on a machine where
    every registered backend is available, for layers of LARGE neurons per step (and, where it differs,
    of SMALL)."""
    from softspike.core.errors import SoftspikeError

    cases: list[tuple[str, str, dict[str, Any]]] = [(n, "defaults", {}) for n in registry.neurons.names()]
    if "lif" in registry.neurons:
        cases += [("lif", label, opts) for label, opts in VARIANTS]
    rows = []
    for name, label, opts in cases:
        try:
            neuron = registry.neurons.create(name, step_mode="m", **opts)
        except (SoftspikeError, TypeError, ValueError) as err:
            rows.append([name, label, *[f"(cannot build with defaults: {err})"] * len(TABLE_COLUMNS)])
            continue
        cells = []
        for device, dtype in TABLE_COLUMNS:
            picks = [registry.backends.select(neuron.dynamics, neuron.cfg, _input((2, 1, n), device, dtype),
                                              everywhere=True).backend.name for n in (LARGE, SMALL)]
            cells.append(picks[0] if picks[0] == picks[1] else f"{picks[0]} (small: {picks[1]})")
        rows.append([name, label, *cells])
    return rows


def table_markdown(registry: Any) -> str:
    """The docs' tables: every backend with its priority and scope (in `auto`'s order), then `backend_table`."""
    lines = ["| backend | priority | scope |", "|---|---|---|"]
    lines += [f"| `{b.name}` | {b.priority} | {b.scope} |" for b in registry.backends]
    head = ["neuron", "settings", *(f"{d.upper()} {str(t).replace('torch.', '')}"
                                    for d, t in TABLE_COLUMNS)]
    lines += ["", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(f"`{c}`" if i == 0 else c for i, c in enumerate(row)) + " |"
              for row in backend_table(registry)]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    if args.backends:
        import softspike

        registry = softspike.get_registry()
        if args.markdown:
            sys.stdout.write(table_markdown(registry))
        else:
            head = ["NEURON", "SETTINGS", *(f"{d}/{str(t).replace('torch.', '')}" for d, t in TABLE_COLUMNS)]
            rows = [head, *backend_table(registry)]
            widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
            for r in rows:
                print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        return 0
    info = collect(args)
    if args.json:
        json.dump(info, sys.stdout, indent=2, default=str)
        print()
        return 0
    fused = info["fused"]
    print(f"softspike {info['softspike']}, torch {info['torch']}, Python {info['python']} on {info['platform']}")
    print(f"CUDA available: {info['cuda_available']}; torch threads: {fused['threads']}")
    print("plugins: " + ", ".join(f"{n} {k}s" for k, n in info["plugins"].items())
          + (f" ({info['plugin_errors']} skipped: see `softspike plugins`)" if info["plugin_errors"] else ""))
    print("backends (auto tries them in this order):")
    for b in fused["backends"]:
        state = "available" if b["available"] else f"unavailable ({b['status']})"
        origin = "" if b["distribution"] == "softspike" else f" [from {b['distribution']}]"
        print(f"  {b['name']:<10} {state}{origin}: {b['scope']}")
    layer = info["layer"]
    if layer is not None:
        shape = "x".join(map(str, layer["shape"]))
        print(f"for a {layer['neuron']} layer, input {shape} {layer['dtype']} on {layer['device']}: "
              f"auto runs {fused['default']}")
        for row in fused["layer"]:
            mark = "runs" if row["chosen"] else ("applies" if row["reason"] is None else "no")
            print(f"  {row['name']:<10} {mark}" + (f": {row['reason']}" if row["reason"] else ""))
    return 0
