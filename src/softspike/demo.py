"""`python -m softspike.demo` (`make demo`): train the zoo's `mnist_fc` for one epoch on MNIST and
print its accuracy on the 10,000 test images.

MNIST is read from ../shared/data when it is there (this project's machines), else downloaded to ./data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from softspike.core.errors import SoftspikeError
from softspike.models import load_spec
from softspike.train import fit

SHARED = Path("../shared/data")


def main() -> int:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    shared = (SHARED / "MNIST" / "raw").is_dir()
    root, download = (SHARED, False) if shared else (Path("data"), True)
    print(f"softspike demo: mnist_fc, one epoch on MNIST from {root}{' (downloading)' if download else ''}")
    try:
        checked = load_spec("mnist_fc")
        metrics = fit(checked, {"dataset": "mnist", "data_root": str(root), "download": download, "epochs": 1,
                                "batch_size": 128, "lr": 5e-3, "schedule": "cosine", "seed": 0})
    except SoftspikeError as err:
        print(f"softspike demo: error: {err}", file=sys.stderr)
        return 1
    final = metrics["final"]
    print(f"mnist_fc test accuracy after one epoch: {100 * final['test_accuracy']:.2f}% "
          f"(10,000 test images, {metrics['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
