"""`softspike check DIST_OR_MODULE`: run the conformance suite on an installed plugin and report.

DIST_OR_MODULE is an installed distribution with `softspike` entry points (`softspike-izhikevich`),
an importable module that implements `softspike_register` (`softspike_izhikevich.plugin`), or
`softspike` for the built-ins. Each neuron, surrogate and encoder it registers goes through
`softspike.testing.check_plugin`; each neuron's line also says which multi-step path a large layer of
it takes (a declared kernel, the compiled generic path, or the reference loop, and why). Exit status
1 if any check fails.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import sys
import time
from typing import Any

import torch

from softspike.cli.options import int_range
from softspike.core.errors import SoftspikeError
from softspike.core.hookspecs import ENTRY_POINT_GROUP
from softspike.core.registry import BUILTIN_MODULE, Registry, _register_plugin, load_registry


def add_parser(sub: Any) -> None:
    p = sub.add_parser("check", help="run the conformance suite on an installed plugin package or module")
    p.add_argument("target", metavar="DIST_OR_MODULE",
                   help="a distribution (softspike-izhikevich), a module (softspike_izhikevich.plugin) or softspike")
    p.add_argument("--max-examples", type=int_range(1, 10**6, "max_examples"), default=20,
                   help="hypothesis examples per property (default 20)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-train", action="store_true",
                   help="skip the training property (mnist_fc's network, a few steps; compiles a generic neuron)")
    p.set_defaults(run=run)


def _modules_of(target: str) -> tuple[list[tuple[str, Any]], str]:
    """The plugin modules `target` names, and the distribution label they register under."""
    if target.replace("_", "-") == "softspike":
        return [], "softspike"
    try:
        dist = md.distribution(target)
    except md.PackageNotFoundError:
        dist = None
    if dist is not None:
        eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        if not eps:
            raise SoftspikeError(f"distribution {target!r} declares no [project.entry-points.{ENTRY_POINT_GROUP}]")
        return [(ep.name, ep.load()) for ep in eps], dist.metadata["Name"]
    try:
        module = importlib.import_module(target)
    except ImportError as err:
        raise SoftspikeError(
            f"{target!r} is neither an installed distribution nor an importable module ({err}); "
            "pip install the plugin package, or give its module path (like my_package.plugin)"
        ) from None
    if not hasattr(module, "softspike_register"):
        raise SoftspikeError(f"module {target!r} defines no softspike_register hook")
    return [(target, module)], f"<module {target}>"


def _registry_for(target: str) -> tuple[Registry, str]:
    """A registry holding the built-ins plus only `target`'s plugins, and the label of its entries."""
    modules, label = _modules_of(target)
    reg = load_registry(autoload=False)
    assert reg.plugin_manager is not None
    for name, module in modules:
        if module.__name__ == BUILTIN_MODULE:
            continue
        _register_plugin(reg, reg.plugin_manager, module, name, label)
    if reg.errors:
        e = reg.errors[0]
        raise SoftspikeError(f"plugin {e.plugin!r} from {e.distribution} failed to register: {e.error}")
    return reg, label


def _fast_path(reg: Registry, name: str) -> str:
    """The backend `auto` runs for a large layer of neuron `name`, and why it passed the others over."""
    from softspike.cli.info import LARGE

    neuron = reg.neurons.create(name)
    chosen, skipped = reg.backends.select(neuron.dynamics, neuron.cfg, torch.zeros(2, LARGE))
    why = "; ".join(f"{n}: {w}" for n, w in skipped)
    return chosen.name + (f" (passed over {why})" if why else "")


def check(target: str, max_examples: int, train: bool = True) -> list[dict[str, Any]]:
    from softspike.testing import ConformanceError, check_plugin

    reg, label = _registry_for(target)
    rows = []
    for kind, catalog in reg.catalogs().items():
        for entry in catalog:
            if entry.distribution != label:
                continue
            t0 = time.perf_counter()
            row: dict[str, Any] = {"kind": kind, "name": entry.name, "ok": True, "error": ""}
            try:
                check_plugin(kind, entry.name, max_examples=max_examples, registry=reg, train=train)
                if kind == "neuron":
                    row["fast_path"] = _fast_path(reg, entry.name)
            except ConformanceError as err:
                row.update(ok=False, error=err.message, property=err.prop, counterexample=err.counterexample)
            except Exception as err:  # report every plugin, not only the first failure
                row["ok"], row["error"] = False, f"{type(err).__name__}: {err}"
            row["seconds"] = round(time.perf_counter() - t0, 2)
            rows.append(row)
    if not rows:
        raise SoftspikeError(f"{target!r} registers no neuron, surrogate or encoder")
    return rows


def run(args: argparse.Namespace) -> int:
    rows = check(args.target, args.max_examples, train=not args.no_train)
    failed = [r for r in rows if not r["ok"]]
    if args.json:
        json.dump({"target": args.target, "checked": rows, "failed": len(failed)}, sys.stdout, indent=2)
        print()
        return 1 if failed else 0
    for r in rows:
        state = "ok  " if r["ok"] else "FAIL"
        extra = f"; multi-step path: {r['fast_path']}" if r.get("fast_path") else ""
        print(f"{state} {r['kind']} {r['name']!r} ({r['seconds']} s){extra}")
        if r.get("property"):
            print(f"     property: {r['property']}")
        if r["error"]:
            print("     " + r["error"].strip().replace("\n", "\n     "))
        if r.get("counterexample"):
            print("     " + r["counterexample"].strip().replace("\n", "\n     "))
    print(f"{len(rows) - len(failed)} of {len(rows)} plugins of {args.target} pass the conformance suite")
    return 1 if failed else 0
