"""`softspike plot CHECKPOINT --sample 0 --out raster.png`: what a trained network does with one sample."""

from __future__ import annotations

import argparse
from typing import Any

from softspike.cli.options import file_option, int_range, seed_option

KINDS = ("raster", "membrane", "rates")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plot", help="plot spikes, membrane or rates of a trained network",
                       description="Run a checkpoint's network (its spec is stored in it) on dataset samples and "
                       "plot: a spike raster of every neuron layer (raster), the membrane potential of one layer "
                       "with its threshold (membrane), or each layer's histogram of firing rates (rates).")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint file, or its directory")
    p.add_argument("--out", required=True, metavar="FILE", type=file_option(".png", ".svg", ".pdf"),
                   help="the image to write (.png, .svg or .pdf)")
    p.add_argument("--kind", choices=KINDS, default="raster", help="what to plot (default raster)")
    p.add_argument("--dataset", help="default: the dataset it was trained on")
    p.add_argument("--data-root", metavar="DIR", help="default: the one it was trained with")
    p.add_argument("--download", action="store_true", help="fetch the dataset if it is missing")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--sample", type=int_range(0, name="sample"), default=0,
                   help="index of the (first) sample (default 0)")
    p.add_argument("--count", type=int_range(1, name="count"), default=1,
                   help="samples from --sample on (for --kind rates; default 1)")
    p.add_argument("--layer", metavar="PATH", help="the neuron layer for --kind membrane, like layers[2] "
                   "(default: the first)")
    p.add_argument("--neurons", type=int_range(1, name="neurons"), default=1000,
                   help="draw at most this many neurons per layer, spread evenly (default 1000)")
    p.add_argument("--seed", type=seed_option, default=0, help="seed of the encoder's randomness (default 0)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from softspike.monitor import Monitor, membrane_figure, raster_figure, rate_histogram_figure
    from softspike.monitor.plot import save_figure
    from softspike.train.data import DatasetError, load_dataset
    from softspike.train.trained import load_trained

    trained = load_trained(args.checkpoint)
    checked, net = trained.checked, trained.net
    dataset = args.dataset or trained.config.dataset
    data = load_dataset(dataset, args.data_root or trained.config.data_root, args.download, checked.spec.T)
    data.check_fits(checked.spec.input_shape, checked.num_classes, checked.spec.name)
    split = data.test if args.split == "test" else data.train
    count = max(args.count, 1) if args.kind == "rates" else 1
    if not 0 <= args.sample or args.sample + count > len(split):
        raise DatasetError(f"--sample {args.sample} (with --count {count}) is outside the {args.split} split of "
                           f"{dataset!r}, which has {len(split)} samples")
    x, y = split.batch(torch.arange(args.sample, args.sample + count))
    layers = [args.layer] if args.kind == "membrane" and args.layer else None
    torch.manual_seed(args.seed)
    with torch.no_grad(), Monitor(net, layers, v=args.kind == "membrane", neurons=args.neurons) as mon:
        predicted = net(x).argmax(1)
    title = f"{checked.spec.name}, {args.split} sample {args.sample}: label {int(y[0])}, predicted {int(predicted[0])}"
    if args.kind == "raster":
        fig = raster_figure(mon, title=title)
    elif args.kind == "membrane":
        fig = membrane_figure(mon, mon.paths[0])
    else:
        fig = rate_histogram_figure(mon.neuron_rates())
    out = save_figure(fig, args.out)
    print(f"wrote {out}: {args.kind} of {checked.spec.name} on {dataset} {args.split} sample {args.sample}"
          + (f" (+{count - 1})" if count > 1 else ""))
    return 0
