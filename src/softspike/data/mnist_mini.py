"""Rebuild softspike/data/mnist_mini.npz from the original MNIST files (torchvision's raw layout).

    python -m softspike.data.mnist_mini --data-root ../shared/data -o src/softspike/data/mnist_mini.npz

Reads ROOT/MNIST/raw with torchvision (no download unless --download) and keeps every 6th training
and every 5th test image, so the subset spans the whole of both files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from softspike.core.extras import require
from softspike.data import MNIST_MINI, TEST_STRIDE, TRAIN_STRIDE


def build(root: Path, out: Path, download: bool = False) -> Path:
    """Write the subset of the MNIST found in `root` to `out` (compressed npz, uint8)."""
    torchvision = require("torchvision", "train", "reading MNIST")
    arrays: dict[str, np.ndarray] = {}
    for split, train, stride in (("train", True, TRAIN_STRIDE), ("test", False, TEST_STRIDE)):
        ds = torchvision.datasets.MNIST(str(root), train=train, download=download)
        arrays[f"x_{split}"] = ds.data.numpy()[::stride].astype(np.uint8)
        arrays[f"y_{split}"] = ds.targets.numpy()[::stride].astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=Path("data"), help="holds MNIST/raw (default ./data)")
    p.add_argument("--download", action="store_true", help="fetch MNIST into --data-root first")
    p.add_argument("-o", "--out", type=Path, default=Path(MNIST_MINI), help=f"output file (default ./{MNIST_MINI})")
    args = p.parse_args(argv)
    try:
        path = build(args.data_root, args.out, args.download)
    except (RuntimeError, OSError) as err:
        print(f"mnist_mini: cannot read MNIST in {args.data_root}: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
