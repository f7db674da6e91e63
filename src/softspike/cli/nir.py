"""`softspike export-nir SPEC -o net.nir` and `softspike import-nir net.nir -o spec.json`: NIR in and out."""

from __future__ import annotations

import argparse
from typing import Any

from softspike.cli.options import float_range, int_range, seed_option


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export-nir", help="write a network as a NIR file (for Norse, Sinabs, chips...)",
                       description="Write the network of SPEC, with a checkpoint's weights, as a NIR file. "
                       "Time constants are written in seconds: tau_steps x dt (see docs/nir.md).")
    p.add_argument("spec", metavar="SPEC", nargs="?", help="spec file or zoo name (default: the checkpoint's own)")
    p.add_argument("--checkpoint", metavar="FILE", help="trained weights: a checkpoint file or its directory "
                   "(without it: SPEC with freshly initialised weights, seeded by --seed)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the .nir file to write")
    p.add_argument("--dt", type=float_range(0.0, 1e6, "dt"), default=None, help="seconds per time step (default 0.001)")
    p.add_argument("--seed", type=seed_option, default=0, help="seed of the initial weights without --checkpoint")
    p.set_defaults(run=run_export)

    q = sub.add_parser("import-nir", help="read a NIR graph as a spec (and its weights)",
                       description="Read a NIR file as a softspike spec JSON and, with --weights, a checkpoint "
                       "of its weights that `softspike evaluate` reads. See docs/nir.md for the mapping.")
    q.add_argument("nir_file", metavar="NIR_FILE", help="a .nir file")
    q.add_argument("-o", "--output", required=True, metavar="SPEC_JSON", help="where to write the spec")
    q.add_argument("--weights", metavar="FILE", help="also write the weights as a checkpoint (.pt)")
    q.add_argument("--dt", type=float_range(0.0, 1e6, "dt"), default=None,
                   help="seconds per time step (default: the exporter's, stored in the file, else 0.001)")
    q.add_argument("--T", type=int_range(1, name="T"), default=None,
                   help="time steps per sample (default: stored, else 8)")
    q.add_argument("--name", help="the spec's name (default: stored, else the file name)")
    q.add_argument("--input-shape", type=int_range(1, name="input_shape"), nargs="+", metavar="N",
                   help="one sample's shape, if the file's "
                   "Input node does not say it")
    q.add_argument("--allow-short-tau", action="store_true",
                   help="import time constants shorter than one step (refused by default: most often the file was "
                   "written with another dt); those of dt/2 or less, where Euler steps diverge, stay refused")
    q.set_defaults(run=run_import)


def run_export(args: argparse.Namespace) -> int:
    import torch

    from softspike.core.errors import ParameterError
    from softspike.models.builder import build
    from softspike.models.load import load_spec
    from softspike.nir import export_nir, write_nir
    from softspike.nir.common import DEFAULT_DT
    from softspike.train.trained import load_trained

    if args.checkpoint:
        trained = load_trained(args.checkpoint, load_spec(args.spec) if args.spec else None)
        checked, net = trained.checked, trained.net
    elif args.spec:
        checked = load_spec(args.spec)
        torch.manual_seed(args.seed)
        net = build(checked)
    else:
        raise ParameterError("give a SPEC, a --checkpoint, or both")
    dt = DEFAULT_DT if args.dt is None else args.dt
    graph = export_nir(checked, net, dt)
    write_nir(graph, args.output)
    weights = "trained weights" if args.checkpoint else f"untrained weights (seed {args.seed})"
    print(f"wrote {args.output}: {checked.spec.name}, {len(graph.nodes) - 2} NIR nodes, {weights}, dt = {dt:g} s")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from softspike.nir import import_nir

    imported = import_nir(args.nir_file, dt=args.dt, T=args.T, name=args.name, input_shape=args.input_shape,
                          allow_short_tau=args.allow_short_tau)
    imported.save(args.output, args.weights)
    extra = f" and its weights to {args.weights}" if args.weights else ""
    print(f"wrote the spec {imported.spec['name']!r} ({len(imported.spec['layers'])} layers, T = "
          f"{imported.spec['T']}, dt = {imported.dt:g} s) to {args.output}{extra}")
    return 0
