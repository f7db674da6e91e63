"""Bookkeeping of a run (running sums, history, elapsed time: resumable) and its display
(a tqdm bar with running loss and accuracy, TensorBoard scalars, one line per epoch)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from torch import Tensor
from tqdm import tqdm

from softspike.core.extras import require


class TrainLog:
    """Where a run stands: epoch, step within it, the epoch's running sums, the history so far."""

    def __init__(self, epoch: int = 0, step: int = 0, loss_sum: float = 0.0, correct: int = 0, seen: int = 0,
                 history: list[dict[str, Any]] | None = None, elapsed: float = 0.0) -> None:
        self.epoch, self.step = epoch, step
        self._loss: Tensor | float = loss_sum
        self._correct: Tensor | int = correct
        self.seen = seen
        self.history = history or []
        self._elapsed_before = elapsed
        self._t0 = time.perf_counter()

    @classmethod
    def start(cls) -> TrainLog:
        return cls()

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrainLog:
        return cls(state["epoch"], state["step"], state["loss_sum"], state["correct"], state["seen"],
                   list(state["history"]), state["elapsed"])

    @property
    def elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._t0

    def add_batch(self, loss: Tensor, correct: Tensor, n: int) -> None:
        self._loss = self._loss + loss * n
        self._correct = self._correct + correct
        self.seen += n
        self.step += 1

    def running(self) -> tuple[float, float]:
        """Mean loss and accuracy of the epoch so far (a host sync: not every step)."""
        n = max(self.seen, 1)
        return float(self._loss) / n, float(self._correct) / n

    def state(self, epoch: int, step: int) -> dict[str, Any]:
        loss, acc = (0.0, 0) if step == 0 else (float(self._loss), int(self._correct))
        return {"epoch": epoch, "step": step, "loss_sum": loss, "correct": acc, "seen": self.seen if step else 0,
                "history": self.history, "elapsed": self.elapsed}

    def end_epoch(self, epoch: int, test: dict[str, float], rates: dict[str, float], lr: float) -> dict[str, Any]:
        loss, acc = self.running()
        record = {"epoch": epoch + 1, "train_loss": loss, "train_accuracy": acc, "test_loss": test["loss"],
                  "test_accuracy": test["accuracy"], "lr": lr, "firing_rates": rates, "elapsed_s": self.elapsed}
        self.history.append(record)
        self.epoch, self.step, self._loss, self._correct, self.seen = epoch + 1, 0, 0.0, 0, 0
        return record

    def metrics(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        final = self.history[-1] if self.history else {}
        return {"spec": name, "config": config, "epochs": self.history, "final": final, "wall_time_s": self.elapsed}


class _Bar:
    """A tqdm bar on a terminal; elsewhere (logs, CI) a plain line at every fifth of the epoch."""

    def __init__(self, bar: tqdm[Any], plain: bool, epoch: int) -> None:
        self.bar, self.plain, self.epoch = bar, plain, epoch
        self.every = max(1, (bar.total or 1) // 5)

    def step(self, log: TrainLog) -> None:
        self.bar.update(1)
        if self.plain:
            if log.step % self.every == 0 and log.step < (self.bar.total or 0):
                loss, acc = log.running()
                print(f"  epoch {self.epoch + 1} step {log.step}/{self.bar.total}: running loss {loss:.4f} "
                      f"acc {100 * acc:.2f}%", flush=True)
        elif not self.bar.disable and (log.step % 10 == 0 or log.step == self.bar.total):
            loss, acc = log.running()
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{100 * acc:.2f}%", refresh=False)

    def close(self) -> None:
        self.bar.close()


class Progress:
    """The user-facing side: progress bar on stderr, epoch lines on stdout, TensorBoard scalars."""

    def __init__(self, logdir: str | Path | None, show_bar: bool = True, show_epochs: bool = True) -> None:
        self.show, self.show_epochs = show_bar, show_epochs
        self.writer: Any = None
        if logdir is not None:
            tb = require("torch.utils.tensorboard", "train", "TensorBoard logging (--logdir)", "tensorboard")
            self.writer = tb.SummaryWriter(str(logdir))

    def bar(self, epoch: int, epochs: int, total: int, initial: int) -> _Bar:
        plain = self.show and not sys.stderr.isatty()
        bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", disable=plain or not self.show,
                   file=sys.stderr, leave=False, dynamic_ncols=True)
        return _Bar(bar, plain, epoch)

    def epoch(self, r: dict[str, Any]) -> None:
        if self.show_epochs:
            print(f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} acc {100 * r['train_accuracy']:.2f}% | "
                  f"test loss {r['test_loss']:.4f} acc {100 * r['test_accuracy']:.2f}% | "
                  f"lr {r['lr']:.3g} | {r['elapsed_s']:.0f} s", flush=True)
        if self.writer is None:
            return
        e = r["epoch"]
        for split in ("train", "test"):
            self.writer.add_scalar(f"{split}/loss", r[f"{split}_loss"], e)
            self.writer.add_scalar(f"{split}/accuracy", r[f"{split}_accuracy"], e)
        self.writer.add_scalar("lr", r["lr"], e)
        for path, rate in r["firing_rates"].items():
            self.writer.add_scalar(f"firing_rate/{path}", rate, e)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
