"""MNIST accuracy benchmark: the zoo's `mnist_fc` (784-196-10 LIF, Poisson input) on real MNIST.

Trains on the 60,000 training images, evaluates on the full 10,000-image test set after every
epoch, writes TensorBoard logs and metrics.json to --logdir and a PNG of test accuracy per epoch.
Target: >= 98.0 % test accuracy. Run with `make bench-accuracy` (two threads, on the CPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from softspike.models import CheckedSpec, check_spec, load_spec
from softspike.train import fit

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.98


def plot(history: list[dict[str, float]], path: Path, title: str, target: float = TARGET, low: float = 94,
         by_time: bool = False) -> None:
    """Test (and running train) accuracy per epoch, or against the minutes trained so far (`by_time`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["elapsed_s"] / 60 if by_time else r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot(epochs, [100 * r["test_accuracy"] for r in history], "o-", label="test (10,000 images)")
    ax.plot(epochs, [100 * r["train_accuracy"] for r in history], "s--", alpha=0.6, label="train (running)")
    ax.axhline(100 * target, color="grey", lw=0.8, ls=":", label=f"{100 * target:g} % target")
    ax.set_xlabel("minutes of training (epoch ends)" if by_time else "epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(low, 100)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def train(checked: CheckedSpec, options: dict[str, Any], logdir: str) -> tuple[list[dict[str, Any]], float]:
    """Train with fresh logs in `logdir`, print one line per epoch; (the epochs' records, wall seconds)."""
    for old in Path(logdir).glob("events.out.tfevents.*"):
        old.unlink()
    t0 = time.perf_counter()
    history = fit(checked, options, logdir=logdir)["epochs"]
    wall = time.perf_counter() - t0
    for r in history:
        print(f"epoch {r['epoch']:2d}  train {100 * r['train_accuracy']:.2f}%  test {100 * r['test_accuracy']:.2f}%"
              f"  loss {r['train_loss']:.4f}  {r['elapsed_s']:.0f} s")
    return history, wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default="mnist_fc")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--loss", default="cross_entropy")
    p.add_argument("--augment-shift", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--readout-scale", type=float, help="override the spec's readout scale (1 = the 2020 readout)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--logdir", default=str(ROOT / "benchmarks" / "results" / "mnist_fc"))
    p.add_argument("--plot", default=str(ROOT / "docs" / "mnist_fc_accuracy.png"))
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    root = Path(args.data_root)
    download = not (root / "MNIST" / "raw").is_dir()
    if download:
        root = ROOT / "data"
    checked = load_spec(args.spec)
    if args.readout_scale is not None:
        data = checked.to_json()
        data["readout"]["scale"] = args.readout_scale
        checked = check_spec(data, f"{checked.source} (readout scale {args.readout_scale:g})")
    options = {
        "dataset": "mnist", "data_root": str(root), "download": download, "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "schedule": args.schedule, "loss": args.loss,
        "augment_shift": args.augment_shift, "seed": args.seed, "progress": sys.stderr.isatty(),
    }
    history, wall = train(checked, options, args.logdir)
    spec = checked.spec
    final = history[-1]["test_accuracy"]
    best = max(r["test_accuracy"] for r in history)
    title = (f"{spec.name}: T={spec.T}, readout scale {spec.readout.scale:g}, {args.loss}\n"
             f"Adam {args.lr:g} {args.schedule}, batch {args.batch_size}, shift {args.augment_shift} px, "
             f"{wall / 60:.1f} min on {args.threads} CPU threads")
    plot(history, Path(args.plot), title)
    summary = {"spec": spec.name, "options": options, "final_test_accuracy": final, "best_test_accuracy": best,
               "epochs": len(history), "wall_time_s": wall, "threads": args.threads, "target": TARGET}
    (Path(args.logdir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    verdict = "PASS" if final >= TARGET else "BELOW TARGET"
    print(f"{spec.name}: final test accuracy {100 * final:.2f}% (best {100 * best:.2f}%) on 10,000 test images "
          f"after {len(history)} epochs, wall time {wall / 60:.1f} min on {args.threads} threads: {verdict}")
    return 0 if final >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
