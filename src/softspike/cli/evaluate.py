"""`softspike evaluate [SPEC] --checkpoint FILE`: test accuracy of a saved model (the spec defaults to
the one stored in the checkpoint; a spec given must equal it)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from softspike.cli.options import device_option, int_option
from softspike.cli.validate import add_limit_options


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="test accuracy of a trained checkpoint")
    p.add_argument("spec", metavar="SPEC", nargs="?",
                   help="the spec it was trained with (file or zoo name); default: the one stored in the checkpoint")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint file, or its directory")
    p.add_argument("--dataset", help="default: the dataset it was trained on")
    p.add_argument("--data-root", metavar="DIR", help="default: the one it was trained with")
    p.add_argument("--download", action="store_true", help="fetch the dataset if it is missing")
    p.add_argument("--batch-size", type=int_option("test_batch_size"), default=1000)
    p.add_argument("--device", type=device_option, default="cpu")
    p.add_argument("--seed", type=int_option("seed"), default=0, help="seed of the encoder's randomness (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_limit_options(p, batch_size=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from softspike.models.load import load_spec
    from softspike.train.data import load_dataset
    from softspike.train.loop import evaluate, resolve_device
    from softspike.train.trained import load_trained

    trained = load_trained(args.checkpoint, load_spec(args.spec) if args.spec else None)
    checked = trained.checked
    dataset = args.dataset or trained.config.dataset
    data = load_dataset(dataset, args.data_root or trained.config.data_root, args.download, checked.spec.T,
                        args.max_memory)
    data.check_fits(checked.spec.input_shape, checked.num_classes, checked.spec.name)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    net = trained.net.to(device)
    net.max_memory = args.max_memory  # None: the device's memory
    result = evaluate(net, data.test, args.batch_size, device, trained.config.loss)
    if args.json:
        print(json.dumps({"spec": checked.spec.name, "dataset": dataset, "checkpoint": str(trained.path), **result}))
    else:
        print(f"{checked.spec.name} on {dataset} test set ({len(data.test)} samples): accuracy "
              f"{100 * result['accuracy']:.2f}%, loss {result['loss']:.4f}")
    return 0
