"""`softspike evaluate SPEC --checkpoint FILE`: test accuracy of a saved model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="test accuracy of a trained checkpoint")
    p.add_argument("spec", metavar="SPEC", help="the spec the checkpoint was trained with (file or zoo name)")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint file, or its directory")
    p.add_argument("--dataset", help="default: the dataset it was trained on")
    p.add_argument("--data-root", metavar="DIR", help="default: the one it was trained with")
    p.add_argument("--download", action="store_true", help="fetch the dataset if it is missing")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the encoder's randomness (default 0)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from softspike.models.builder import build
    from softspike.models.load import load_spec
    from softspike.train.checkpoint import load_checkpoint
    from softspike.train.config import make_config
    from softspike.train.data import load_dataset
    from softspike.train.loop import CHECKPOINT_FILE, check_same_spec, evaluate, resolve_device

    checked = load_spec(args.spec)
    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    state = load_checkpoint(path)
    check_same_spec(state, checked, path)
    trained = make_config({}, json.loads(state["config"]))
    dataset = args.dataset or trained.dataset
    data = load_dataset(dataset, args.data_root or trained.data_root, args.download, checked.spec.T)
    data.check_fits(checked.spec.input_shape, checked.num_classes, checked.spec.name)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    net = build(checked).to(device)
    net.load_state_dict(state["model"])
    result = evaluate(net, data.test, args.batch_size, device, trained.loss)
    if args.json:
        print(json.dumps({"spec": checked.spec.name, "dataset": dataset, "checkpoint": str(path), **result}))
    else:
        print(f"{checked.spec.name} on {dataset} test set ({len(data.test)} samples): accuracy "
              f"{100 * result['accuracy']:.2f}%, loss {result['loss']:.4f}")
    return 0
