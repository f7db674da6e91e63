"""`softspike train SPEC --dataset ... --epochs N ...`: train a spec-built network, resumably."""

from __future__ import annotations

import argparse
from typing import Any

from softspike.cli.options import count_option, device_option, float_option, int_option
from softspike.cli.validate import add_limit_options, check_limit
from softspike.core.errors import SoftspikeError
from softspike.train.config import TrainConfig


def add_parser(sub: Any) -> None:
    d = TrainConfig()
    p = sub.add_parser("train", help="train a network spec on a dataset")
    p.add_argument("spec", metavar="SPEC", help="a spec file, or the name of a zoo spec (e.g. mnist_fc)")
    p.add_argument("--dataset", help="mnist, mnist_mini (embedded subset), fashion_mnist, cifar10, npz:PATH or "
                   f"tonic:NMNIST|DVSGesture|SHD[,options] (default {d.dataset})")
    p.add_argument("--data-root", metavar="DIR", help=f"where datasets live (default {d.data_root})")
    p.add_argument("--download", action="store_true", default=None, help="fetch the dataset if it is missing")
    p.add_argument("--epochs", type=int_option("epochs"), help=f"total epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int_option("batch_size"), help=f"default {d.batch_size}")
    p.add_argument("--lr", type=float_option("lr"), help=f"learning rate (default {d.lr})")
    p.add_argument("--optimizer", choices=("adam", "sgd"), help="default adam")
    p.add_argument("--weight-decay", type=float_option("weight_decay"), help="default 0")
    p.add_argument("--loss", choices=("cross_entropy", "mse"),
                   help="cross_entropy on the readout (the 2020 loss at readout scale 1) or mse to one-hot rates")
    p.add_argument("--schedule", choices=("constant", "cosine"), help="learning-rate schedule (default constant)")
    p.add_argument("--augment-shift", type=int_option("augment_shift"), metavar="PIXELS",
                   help="random image shifts (default 0: off)")
    p.add_argument("--train-subset", type=int_option("train_subset"), metavar="N",
                   help="train on the first N samples only")
    p.add_argument("--device", type=device_option, help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--seed", type=int_option("seed"), help=f"default {d.seed}")
    p.add_argument("--logdir", metavar="DIR", help="TensorBoard logs and metrics.json go here")
    p.add_argument("--checkpoint", metavar="DIR", help="write DIR/last.pt every epoch (atomically)")
    p.add_argument("--checkpoint-every", type=int_option("checkpoint_every"), metavar="STEPS",
                   help="also checkpoint every STEPS steps")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint DIR")
    p.add_argument("--overwrite", action="store_true", help="replace another spec's checkpoint in --checkpoint DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no line per epoch")
    add_limit_options(p, batch_size=False)
    add_distributed_options(p)
    p.set_defaults(run=run, parser=p)


def add_distributed_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("several processes (see docs/pipelines.md)")
    g.add_argument("--pipeline", metavar="PLAN", help="run the stages of a `softspike plan` file, one process each "
                   "(start the processes with torchrun --nproc-per-node S, or with --nproc)")
    g.add_argument("--ddp", action="store_true", help="data parallel: one replica per process (with --pipeline: "
                   "processes / stages replicas of every stage)")
    g.add_argument("--nproc", type=count_option(1, 1024), metavar="N",
                   help="start N processes here with torch's elastic launcher; "
                   "without --pipeline or --ddp, plan N pipeline stages first")
    g.add_argument("--microbatches", type=count_option(1, 1 << 20), metavar="M",
                   help="micro-batches when --nproc plans (default N)")


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The training options given on the command line (None where not given)."""
    names = ("dataset", "data_root", "download", "epochs", "batch_size", "lr", "optimizer", "weight_decay",
             "loss", "schedule", "augment_shift", "train_subset", "device", "seed", "checkpoint_every")
    out = {n: getattr(args, n) for n in names}
    out["progress"] = False if args.no_progress or args.quiet else None
    return out


def run(args: argparse.Namespace) -> int:
    from softspike.models.load import load_spec
    from softspike.train.health import plain_warnings
    from softspike.train.loop import fit

    if args.pipeline is not None or args.ddp or args.nproc is not None or args.microbatches is not None:
        return run_distributed(args)
    checked = load_spec(args.spec)
    check_limit(checked, args.batch_size or TrainConfig().batch_size, args.max_memory, args.device or "cpu")
    try:
        with plain_warnings("softspike train"):  # layer warnings as one line, not a source excerpt
            metrics = fit(checked, options(args), args.logdir, args.checkpoint, args.resume, verbose=not args.quiet,
                          overwrite=args.overwrite, max_memory=args.max_memory)
    except OSError as err:  # an unwritable --logdir or --checkpoint, a full disk
        raise SoftspikeError(f"{err.filename or 'file system'}: {err.strerror or err}") from None
    final = metrics["final"]
    if final:
        print(f"{checked.spec.name}: test accuracy {100 * final['test_accuracy']:.2f}% after {final['epoch']} "
              f"epochs ({metrics['wall_time_s']:.0f} s)")
    return 0


def run_distributed(args: argparse.Namespace) -> int:
    """`softspike train` with --pipeline, --ddp, --nproc or --microbatches. Under torchrun every process
    runs this: an error found before the processes meet is the same on all of them, so it is said once
    (rank 0, softspike.cli.ranks), exit 2 for the command line and 1 for the rest (the spec, the data);
    an error of one process while they train is said by that process."""
    from softspike.cli.ranks import fail, record
    from softspike.models.load import load_spec
    from softspike.pipelines.running.launch import ArgumentError, prepare_command

    try:
        checked = load_spec(args.spec)
        if args.pipeline is None or not (args.device or "cpu").startswith("cuda"):
            # Pipeline stages on GPUs hold a part of the network each: the plan checked every stage against
            # its own device's memory, and the whole network need not fit one of them.
            check_limit(checked, args.batch_size or TrainConfig().batch_size, args.max_memory, args.device or "cpu")
        start = prepare_command(args, checked, options(args))
    except ArgumentError as err:
        return fail(f"softspike train: error: {err}", 2)
    except SoftspikeError as err:
        return fail(f"softspike train: error: {err}", 1)
    try:
        return start()
    except SoftspikeError as err:  # printed by softspike.cli.main; named in torchrun's report too
        record(f"softspike train: error: {err}")
        raise
