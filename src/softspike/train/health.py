"""Training that says when it goes wrong: non-finite losses and weights stop the run, dead or
saturated layers are warned about.

Why both checks are needed in an SNN: a NaN membrane potential never crosses the threshold
(NaN >= V_th is false), so a network whose weights became NaN emits no spikes and its loss stays
finite (ln C for a silent readout); checking the loss alone would let it train on and save NaN
weights. So:

- on the CPU the loss is checked at every step (one `isfinite`, before `backward`, so a bad loss never
  reaches the weights); on a GPU reading it would wait for the step's kernels at every step, so there
  the check stays on the device (a flag holding the first bad step) and is read with the parameter
  check below: a bad loss may reach the weights, never a checkpoint, and the message still names the
  step it came from;
- the parameters are checked every `every` steps and before every checkpoint (one reduction over
  all of them: a sum is non-finite when any element is), so no checkpoint ever holds NaN weights;
- at each epoch end, a neuron layer whose training firing rate r over the whole epoch was r = 0
  (silent) or r = 1 (every neuron spiking at every step: saturated) is warned about once per run.

Diagnosis runs only on the failure path: it names the first layer, in spec order, whose parameters
or (re-running the batch) whose output is non-finite. Then it runs the last batch through a freshly
built network (finite weights from the spec's own initialisation): if a layer's output is non-finite
there too, the spec (or the data), not the learning rate, is the cause, and the message names that
layer by its spec path instead of advising a lower learning rate.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from softspike.core.errors import SoftspikeError
from softspike.models.network import Residual, SpikingNetwork

#: Parameters are checked every this many steps (and before every checkpoint).
CHECK_EVERY = 25
#: A layer mean rate at or above this is saturated (float sums of ones are not always exact).
SATURATED = 1.0 - 1e-6


class TrainingDiverged(SoftspikeError, FloatingPointError):
    """The loss or a parameter became NaN or infinite; training stopped before saving it."""


class LayerActivityWarning(UserWarning):
    """A neuron layer did not spike at all, or spiked at every step, through a whole epoch."""


def _nonfinite_params(module: nn.Module) -> list[str]:
    """'name (k of n values)' for each parameter of `module` holding NaN or inf."""
    bad = []
    for name, p in module.named_parameters():
        k = int((~torch.isfinite(p.detach())).sum())
        if k:
            bad.append(f"{name} ({k:,} of {p.numel():,} values)")
    return bad


def _nonfinite_output(net: SpikingNetwork, x: Tensor) -> str | None:
    """Re-run the batch and name the first layer (spec order) whose output holds NaN or inf."""
    found: list[str] = []

    def hook(path: str) -> Any:
        def check(module: nn.Module, args: Any, out: Any) -> None:
            if not found and isinstance(out, Tensor) and not bool(torch.isfinite(out).all()):
                found.append(path)

        return check

    handles = [m.register_forward_hook(hook(path)) for path, m in net.layer_paths]
    try:
        with torch.no_grad():
            net.spikes(x)
    finally:
        for h in handles:
            h.remove()
    return found[0] if found else None


def _hint_silent(module: nn.Module) -> str:
    th = getattr(module, "v_threshold", None)
    return (f"its input never brings V to the threshold{f' {th:g}' if th is not None else ''}: lower v_threshold, "
            "scale up the weights feeding it (or the input), or raise the neuron's tau so it integrates longer")


def _hint_saturated(module: nn.Module) -> str:
    th = getattr(module, "v_threshold", None)
    return (f"every neuron crossed the threshold{f' {th:g}' if th is not None else ''} at every step: raise "
            "v_threshold, scale down the weights feeding it (or the input), or lower the neuron's tau")


class TrainingHealth:
    """The checks above for one run of `fit` (see the module docstring)."""

    def __init__(self, net: SpikingNetwork, steps_per_epoch: int, checkpoint: Path | None = None,
                 every: int = CHECK_EVERY, fresh: Callable[[], SpikingNetwork] | None = None,
                 defer: bool | None = None) -> None:
        self.net = net
        self.steps_per_epoch = steps_per_epoch
        self.checkpoint = checkpoint
        self.every = max(1, every)
        self.params = list(net.parameters())
        self.warned: set[str] = set()
        self.finite_at = 0  # the global step after which the parameters were last found finite
        self.fresh = fresh  # builds the same network anew (finite initial weights), for the diagnosis
        self.last_x: Tensor | None = None
        self.defer = defer  # read the loss check only with the parameter check; None: off the CPU only
        self.bad_loss_at: Tensor | None = None  # deferred: on the device, the first bad global step (1-based), 0: none

    def _where(self, epoch: int, step: int) -> str:
        return (f"epoch {epoch + 1}, step {step + 1} of {self.steps_per_epoch} "
                f"(global step {epoch * self.steps_per_epoch + step + 1})")

    def _stop(self, what: str, epoch: int, step: int, culprit: str) -> TrainingDiverged:
        if self.checkpoint is not None and self.checkpoint.is_file():
            kept = f"The last good checkpoint, {self.checkpoint}, is intact (checked before saving)"
        else:
            kept = "No checkpoint holds the bad values"
        head = f"training stopped at {self._where(epoch, step)}: {what}; {culprit}. {kept}."
        layer = self._spec_cause()
        if layer is not None:
            path, kind = layer
            return TrainingDiverged(
                f"{head} The spec is the cause, not the learning rate: a freshly built network, with finite "
                f"initial weights, already gives non-finite output at {path} ({kind}) on this batch. Check that "
                "layer's settings in the spec (and a custom plugin's arithmetic there), and that the input is in "
                "the range the network expects."
            )
        return TrainingDiverged(
            f"{head} To go on: lower the learning rate (--lr), keep the input in a finite range, or check a custom "
            "neuron's dynamics for overflow."
        )

    def _spec_cause(self) -> tuple[str, str] | None:
        """(spec path, module type) of the first layer a fresh network's output is non-finite at, on
        the last batch; None if there is none (or no way to build one)."""
        if self.fresh is None or self.last_x is None:
            return None
        net = self.fresh()
        net.train(self.net.training)
        if _nonfinite_params(net):
            return None
        path = _nonfinite_output(net, self.last_x)
        if path is None:
            return None
        module = dict(net.layer_paths)[path]
        return path, type(getattr(module, "module", module)).__name__

    def _went_bad(self) -> str:
        since = f"after global step {self.finite_at}" if self.finite_at else "since the start"
        return f"parameters became NaN or infinite ({since}; checked every {self.every} steps and before saving)"

    def step(self, loss: Tensor, epoch: int, step: int, x: Tensor) -> None:
        """Before `backward`: raise TrainingDiverged if the loss or (every `every` steps) a parameter is bad.
        Deferred (off the CPU), the loss check is read only with the parameter check: no host read here."""
        self.last_x = x
        at = epoch * self.steps_per_epoch + step + 1
        if self.defer if self.defer is not None else loss.device.type != "cpu":
            bad = ~torch.isfinite(loss.detach())
            seen = self.bad_loss_at if self.bad_loss_at is not None else torch.zeros_like(bad, dtype=torch.long)
            self.bad_loss_at = torch.where(bad & (seen == 0), at, seen)
        elif not bool(torch.isfinite(loss.detach())):
            self.check_parameters(epoch, step, losses=False)  # bad weights are the likelier cause: name them first
            layer = _nonfinite_output(self.net, x)
            culprit = (f"the first layer whose output is non-finite is {layer}" if layer is not None
                       else "every parameter and layer output is finite, so the readout or loss produced it "
                       f"(or the batch holds extreme values: |x| max {float(x.abs().max()):.3g})")
            raise self._stop(f"the loss is {float(loss.detach())}", epoch, step, culprit)
        if at % self.every == 0:
            self.check_parameters(epoch, step)

    def _bad_layers(self) -> list[str]:
        """'path (Type): parameter (k of n values)' for each layer, in spec order, with NaN or inf parameters."""
        found = []
        for path, module in self.net.layer_paths:
            if not isinstance(module, Residual):  # a block's parameters are its inner layers', listed after it
                inner = getattr(module, "module", module)  # the torch layer inside a MultiStep wrapper
                bad = _nonfinite_params(inner)
                if bad:
                    found.append(f"{path} ({type(inner).__name__}): {', '.join(bad)}")
        return found

    def _check_losses(self, epoch: int, step: int) -> None:
        """Deferred: read the device-side loss flag (one host read) and raise if a loss since the last read was bad."""
        flag, self.bad_loss_at = self.bad_loss_at, None
        first = 0 if flag is None else int(flag)
        if not first:
            return
        e, s = divmod(first - 1, self.steps_per_epoch)
        found = self._bad_layers()
        culprit = ("the weights it reached are non-finite now, first in " + "; then ".join(found) if found else
                   "every parameter is finite, so the readout or loss produced it (or the batch held extreme values)")
        raise self._stop(f"the loss became NaN or infinite at {self._where(e, s)} (checked on the device, read every "
                         f"{self.every} steps and before saving)", epoch, step, culprit)

    def check_parameters(self, epoch: int, step: int, losses: bool = True) -> None:
        """Raise TrainingDiverged naming the first layer (spec path) whose parameters hold NaN or inf (and,
        first, with `losses`, a deferred non-finite loss, naming its step)."""
        if losses:
            self._check_losses(epoch, step)
        if not self.params:
            return
        with torch.no_grad():
            total = torch.stack([p.detach().sum() for p in self.params]).sum()
        if bool(torch.isfinite(total)):
            self.finite_at = epoch * self.steps_per_epoch + step + 1
            return
        found = self._bad_layers()
        if found:  # spec order; by the time a check runs, a NaN may have spread to the layers before it
            raise self._stop(self._went_bad(), epoch, step, "the first such layer is " + "; then ".join(found))
        bad = _nonfinite_params(self.net)
        if bad:  # a parameter outside the layers (an encoder's): still never saved
            raise self._stop(self._went_bad(), epoch, step, f"in {', '.join(bad)}")

    def before_save(self, epoch: int, step: int) -> None:
        """Check the parameters before a checkpoint that resumes at (epoch, step), i.e. after the step before it."""
        if step == 0:
            epoch, step = epoch - 1, self.steps_per_epoch
        self.check_parameters(epoch, step - 1)

    def end_epoch(self, record: dict[str, Any]) -> None:
        """Warn once per layer about a layer silent or saturated through the epoch just ended."""
        modules = dict(self.net.layer_paths)
        for path, rate in record.get("firing_rates", {}).items():
            if path in self.warned or not math.isfinite(rate) or 0.0 < rate < SATURATED:
                continue
            self.warned.add(path)
            module = modules.get(path, self.net)
            state, hint = ("silent: no neuron spiked", _hint_silent(module)) if rate == 0.0 else \
                ("saturated: every neuron spiked at every step", _hint_saturated(module))
            warnings.warn(f"{path} was {state} through training epoch {record.get('epoch', '?')}; {hint}",
                          LayerActivityWarning, stacklevel=2)


@contextmanager
def plain_warnings(prog: str) -> Iterator[None]:
    """Within the block, show LayerActivityWarning as `PROG: warning: message` on stderr (command lines)."""
    with warnings.catch_warnings():  # restores warnings.showwarning on exit
        shown = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
            if issubclass(category, LayerActivityWarning):
                print(f"{prog}: warning: {message}", file=sys.stderr)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


__all__ = ["CHECK_EVERY", "LayerActivityWarning", "TrainingDiverged", "TrainingHealth", "plain_warnings"]
