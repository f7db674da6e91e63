"""`python -m softspike.demo` (`make demo`): train the zoo's `mnist_fc` on MNIST and print its test accuracy.

Works offline on a fresh clone: with no MNIST on the machine it trains on the subset shipped inside
softspike (10,000 training and 2,000 test images, `softspike/data/mnist_mini.npz`, CC BY-SA 3.0).
Where the full dataset is found (torchvision's layout, ROOT/MNIST/raw/*-ubyte: --data-root, else
../shared/data or ./data) it uses that; --download fetches it into --data-root (default ./data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from softspike.core.errors import SoftspikeError

#: Where a full MNIST is looked for when --data-root is not given (this project's machines, then ./data).
SEARCHED = (Path("../shared/data"), Path("data"))
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def has_mnist(root: Path) -> bool:
    """Whether `root` holds MNIST as torchvision reads it (ROOT/MNIST/raw, unpacked)."""
    return all((root / "MNIST" / "raw" / name).is_file() for name in MNIST_FILES)


def choose_data(data_root: Path | None, download: bool, embedded: bool) -> tuple[str, Path, str]:
    """(dataset name, root, what to print): embedded subset, a local full MNIST, or a download."""
    if embedded:
        return "mnist_mini", Path("data"), "the embedded subset (10,000 train / 2,000 test images)"
    if download:
        root = data_root or Path("data")
        return "mnist", root, f"MNIST in {root} (downloading it if missing)"
    if data_root is not None:
        return "mnist", data_root, f"MNIST in {data_root}"
    for root in SEARCHED:
        if has_mnist(root):
            return "mnist", root, f"MNIST found in {root} (60,000 train / 10,000 test images)"
    return "mnist_mini", Path("data"), ("the embedded subset (10,000 train / 2,000 test images; no MNIST in "
                                        f"{' or '.join(map(str, SEARCHED))}, and --download not given)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m softspike.demo", description=__doc__.splitlines()[0],
                                epilog="\n".join(__doc__.splitlines()[2:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, metavar="DIR", help="use the full MNIST in DIR/MNIST/raw")
    p.add_argument("--download", action="store_true", help="fetch the full MNIST into --data-root (default ./data)")
    p.add_argument("--embedded", action="store_true", help="train on the embedded subset even if MNIST is found")
    p.add_argument("--epochs", type=int, default=None, help="default: 5 on the subset, 1 on the full dataset")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from softspike.models import load_spec
    from softspike.train import fit

    torch.set_num_threads(max(1, args.threads))
    dataset, root, what = choose_data(args.data_root, args.download, args.embedded)
    epochs = args.epochs or (5 if dataset == "mnist_mini" else 1)
    print(f"softspike demo: the zoo's mnist_fc (784-196-10 LIF, T=8), {epochs} epoch(s) on {what}")
    try:
        checked = load_spec("mnist_fc")
        metrics = fit(checked, {"dataset": dataset, "data_root": str(root), "download": args.download,
                                "epochs": epochs, "batch_size": 128, "lr": 5e-3, "schedule": "cosine", "seed": 0,
                                # one-pixel shifts: 10,000 images overfit within a few epochs without them
                                "augment_shift": 1})
    except SoftspikeError as err:
        print(f"softspike demo: error: {err}", file=sys.stderr)
        return 1
    final = metrics["final"]
    print(f"mnist_fc test accuracy: {100 * final['test_accuracy']:.2f}% on {dataset}'s test images "
          f"after {epochs} epoch(s) ({metrics['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
