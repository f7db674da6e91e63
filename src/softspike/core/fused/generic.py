"""The generic fast path: any dynamics, one compiled step per time step.

`torch.compile` (inductor) of one neuron step (the dynamics' charge, threshold and after_fire, the
library's fire and reset) turns the dozens of small elementwise ops of a step into one fused kernel
forward and one backward; Python loops over T. Compiling the whole time loop instead is a trap
(minutes of compile time, slower than eager: docs/benchmarks.md).

Inductor does not see through an `autograd.Function`, so the spike is written in plain ops with the
same values and gradient as the spike op:

    S = Θ(z) + (z - z.detach())·σ'(z).detach()        forward exactly Θ(z); dS/dz = σ'(z)

The compiled step is built once per process and shared by every neuron (dynamo's guards tell the
dynamics and shapes apart; inductor's cache keeps the compiled kernels across processes). Where no
compiler works, the first call says why (`status()`, shown by `softspike info`) and the reference
loop runs instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics, State
from softspike.core.neuron import FireConfig, neuron_step, resting
from softspike.core.surrogate import Surrogate

log = logging.getLogger("softspike.fused")

#: Below this many elements per time step, the seconds a compile costs are never paid back (and
#: every new parameter value recompiles): `backend="auto"` then runs the reference loop.
MIN_NUMEL = 4096
DISABLE_ENV = "SOFTSPIKE_NO_COMPILE"

_lock = threading.Lock()
_step: Callable[..., tuple[Tensor, State]] | None = None
_status = "not tried yet"
_failed = False


def traceable_spike(z: Tensor, gate: Surrogate) -> Tensor:
    """Θ(z) forward, σ'(z) backward, in ops inductor fuses (no autograd.Function)."""
    zd = z.detach()
    return (zd >= 0).to(z.dtype) + (z - zd) * gate.derivative(zd)


def _eager_step(dynamics: Dynamics, cfg: FireConfig, x: Tensor, state: State) -> tuple[Tensor, State]:
    return neuron_step(dynamics, cfg, x, state, traceable_spike)


def status() -> tuple[bool, str]:
    """(usable, why): whether the compiled step can run here."""
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False, f"disabled by {DISABLE_ENV}=1"
    if not _failed and not any(shutil.which(c) for c in (os.environ.get("CXX") or "c++", "g++", "clang++")):
        return False, "unavailable: no C++ compiler for torch.compile's CPU code (set CXX, or install g++)"
    return not _failed, _status


def _compiled() -> Callable[..., tuple[Tensor, State]]:
    global _step
    with _lock:
        if _step is None:
            _step = torch.compile(_eager_step, dynamic=False)
        return _step


def _fail(err: BaseException) -> None:
    global _failed, _status
    _failed = True
    _status = f"unavailable: torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
    log.warning("softspike: the compiled generic path is off, the reference loop runs: %s", _status)


def usable(x_seq: Tensor, forced: bool) -> str | None:
    """None if the compiled step should run on this input, else why not."""
    ok, why = status()
    if not ok:
        return why
    if not forced and x_seq[0].numel() < MIN_NUMEL:
        return f"fewer than {MIN_NUMEL} neurons per step: compiling would not pay"
    return None


def compiled_multistep(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor) -> Tensor | None:
    """Spikes [T, ...] by the compiled step, or None if the compiler failed (the caller falls back)."""
    global _status
    step = _compiled()
    state = resting(dynamics, cfg, x_seq[0])
    out = []
    first = _status != "compiled"
    try:
        for t in range(x_seq.shape[0]):
            s, state = step(dynamics, cfg, x_seq[t], state)
            out.append(s)
        if first:
            _probe_backward(step, dynamics, cfg, x_seq[0])
    except Exception as err:  # a compiler that cannot build here: say why once, then fall back
        if not first:
            raise
        _fail(err)
        return None
    _status = "compiled"
    return torch.stack(out)


def _probe_backward(step: Callable[..., Any], dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> None:
    """Compile the backward now, where a failure can still fall back (not in the middle of backward)."""
    if not torch.is_grad_enabled():
        return
    xp = x.detach().clone().requires_grad_(True)
    state = {k: v.detach() for k, v in resting(dynamics, cfg, x).items()}
    s, state = step(dynamics, cfg, xp, state)
    # The spikes of a step may not depend on its own input (a current-based neuron): then the
    # state, which carries the input forward, does.
    outs = [t for t in (s, *state.values()) if t.requires_grad]
    if outs:
        torch.autograd.grad(sum(t.sum() for t in outs), xp, allow_unused=True)
