"""Every registered neuron trains: mnist_fc's network with each neuron, one epoch through `softspike train`.

For every neuron in the registry (built-ins and any installed plugin), the zoo's mnist_fc spec gets
that neuron in both neuron layers (a `tau` parameter, where the neuron has one, set to mnist_fc's 2.0
time steps; every other parameter at its default), and `softspike train SPEC --dataset mnist_mini
--epochs 1` runs it in a child process: the real entry point, at the real layer size (batch 128 x 196
neurons, above the compiled generic path's 4,096-neuron threshold). Prints a Markdown table: the
backend `auto` picks for the hidden layer, test accuracy (chance is 10 %) and wall time.
With --inductor, also `softspike.testing.check_trains(name, compile_backend="inductor")` per neuron:
torch.compile(fullgraph=True) with inductor's full code generation equals eager (spikes, gradients);
the test suite runs the same check with the aot_eager backend, without minutes of code generation.
Run with `make bench-neurons` (one thread).
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import softspike
from softspike.core.registry import backend_info


def spec_for(name: str) -> dict:
    spec = json.loads((importlib.resources.files("softspike.models.zoo") / "mnist_fc.json").read_text())
    reg = softspike.get_registry()
    neuron: dict = {"type": name}
    if "tau" in reg.neurons.get(name).params.model_fields:
        neuron["tau"] = 2.0
    for layer in spec["layers"]:
        if layer["type"] == "neuron":
            layer["neuron"] = dict(neuron)
    spec["name"] = f"mnist_fc_{name}"
    return spec


def backend_for(name: str, batch: int) -> str:
    layer = softspike.get_registry().neurons.create(name)
    rows = backend_info(layer, torch.zeros(8, batch, 196))["layer"]
    return next(str(r["name"]) for r in rows if r["chosen"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--neurons", help="comma-separated names (default: every registered neuron)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--timeout", type=float, default=900, help="seconds per neuron")
    p.add_argument("--inductor", action="store_true", help="also check inductor's fullgraph compile == eager")
    args = p.parse_args()
    names = args.neurons.split(",") if args.neurons else softspike.get_registry().neurons.names()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("SOFTSPIKE_NO_COMPILE", None)
    rows, failed = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = Path(tmp) / f"{name}.json"
            path.write_text(json.dumps(spec_for(name)))
            cmd = [sys.executable, "-m", "softspike", "train", str(path), "--dataset", "mnist_mini",
                   "--epochs", "1", "--no-progress", "--batch-size", str(args.batch_size)]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            wall = time.perf_counter() - start
            found = re.search(r"test accuracy ([0-9.]+)%", proc.stdout)
            acc = float(found.group(1)) if found and proc.returncode == 0 else None
            failed += acc is None or acc <= 10.0
            rows.append((name, backend_for(name, args.batch_size), acc, wall))
            if acc is None:
                print(f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}", file=sys.stderr)
    print("| neuron | hidden layer's backend (auto) | test accuracy after 1 epoch | wall |")
    print("|---|---|---|---|")
    for name, backend, acc, wall in rows:
        shown = "failed" if acc is None else f"{acc:.2f} %"
        print(f"| {name} | {backend} | {shown} | {wall:.0f} s |")
    if args.inductor:
        from softspike.testing import check_trains

        torch.set_num_threads(1)
        for name in names:
            try:
                got = check_trains(name, compile_backend="inductor")
                print(f"{name}: torch.compile(fullgraph=True) (inductor) equals eager; paths {got['paths']}")
            except AssertionError as err:
                failed += 1
                print(f"{name}: FAILED {err}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
