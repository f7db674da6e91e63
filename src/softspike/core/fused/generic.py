"""The generic fast path: any dynamics, one compiled step per time step.

`torch.compile` (inductor) of one neuron step (the dynamics' charge, threshold and after_fire, the
library's fire and reset) turns the dozens of small elementwise ops of a step into one fused kernel;
Python loops over T. Compiling the whole time loop instead is a trap (minutes of compile time,
slower than eager: DESIGN.md), and so, measured here, is compiling chunks of a few steps.

For a dynamics without learnable parameters the loop is one autograd Function (a scan):

    forward    S(t), state(t) = step(X(t), state(t-1)) without a graph; saves state(t-1) per step
    backward   from t = T-1 down: (dL/dX(t), dL/dstate(t-1)) = vjp of step at (X(t), state(t-1))
               applied to (dL/dS(t), dL/dstate(t)), by `torch.func.vjp`, compiled: the step is
               recomputed and differentiated in one fused kernel

so it keeps only the state per step and builds no per-step graph. A dynamics with learnable
parameters runs the compiled step under autograd instead (its parameter gradients come for free).
Inductor does not see through an `autograd.Function`, so the spike is written in plain ops with the
same values and gradient as the spike op:

    S = Θ(z) + (z - z.detach())·σ'(z).detach()        forward exactly Θ(z); dS/dz = σ'(z)

The compiled steps are built once per process and shared by every neuron (dynamo's guards tell
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
from softspike.core.fused.pool import POOL
from softspike.core.neuron import FireConfig, neuron_step, resting
from softspike.core.surrogate import Surrogate

log = logging.getLogger("softspike.fused")

#: Below this many elements per time step, the seconds a compile costs are never paid back (and
#: every new parameter value recompiles): `backend="auto"` then runs the reference loop.
MIN_NUMEL = 4096
DISABLE_ENV = "SOFTSPIKE_NO_COMPILE"

_lock = threading.Lock()
_step: Callable[..., tuple[Tensor, State]] | None = None
_scan_steps: tuple[Callable[..., State], Callable[..., State]] | None = None
_status = "not tried yet"
_failed = False


def traceable_spike(z: Tensor, gate: Surrogate) -> Tensor:
    """Θ(z) forward, σ'(z) backward, in ops inductor fuses (no autograd.Function)."""
    zd = z.detach()
    return (zd >= 0).to(z.dtype) + (z - zd) * gate.derivative(zd)


def _hard(z: Tensor, gate: Surrogate) -> Tensor:
    return (z >= 0).to(z.dtype)


def _eager_step(dynamics: Dynamics, cfg: FireConfig, x: Tensor, state: State) -> tuple[Tensor, State]:
    return neuron_step(dynamics, cfg, x, state, traceable_spike)


def _forward_step(dynamics: Dynamics, cfg: FireConfig, x: Tensor, state: State, s_out: Tensor,
                  saved: list[Tensor]) -> State:
    # Writing into the output slices here (not after the call) lets inductor store straight into
    # them from the fused kernel instead of running a copy per tensor per step.
    for buf, name in zip(saved, sorted(state)):
        buf.copy_(state[name])
    s, new = neuron_step(dynamics, cfg, x, state, _hard)
    s_out.copy_(s)
    return new


def _backward_step(dynamics: Dynamics, cfg: FireConfig, x: Tensor, state: State, grad_s: Tensor,
                   grad_state: State, gx_out: Tensor) -> State:
    def step(x_: Tensor, state_: State) -> tuple[Tensor, State]:
        return neuron_step(dynamics, cfg, x_, state_, traceable_spike)

    _, vjp = torch.func.vjp(step, x, state)[:2]
    gx, gstate = vjp((grad_s, grad_state))
    gx_out.copy_(gx)
    return gstate  # type: ignore[no-any-return]


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


def _compiled_scan() -> tuple[Callable[..., State], Callable[..., State]]:
    global _scan_steps
    with _lock:
        if _scan_steps is None:
            _scan_steps = (torch.compile(_forward_step, dynamic=False), torch.compile(_backward_step, dynamic=False))
        return _scan_steps


def _empty(like: Tensor) -> Tensor:
    return POOL.empty(like.shape, like.dtype) if like.device.type == "cpu" else torch.empty_like(like)


class Scan(torch.autograd.Function):
    """(X [T, ...], dynamics, cfg, save) -> (S, state(t-1) per step, one tensor per state name)."""

    @staticmethod
    def forward(x_seq: Tensor, dynamics: Dynamics, cfg: FireConfig, save: bool) -> tuple[Tensor, ...]:
        fwd, _ = _compiled_scan()
        spikes = _empty(x_seq)
        state = resting(dynamics, cfg, x_seq[0])
        names = sorted(state)
        saved = [_empty(x_seq) for _ in names] if save else []
        for t, x in enumerate(x_seq.unbind(0)):
            state = fwd(dynamics, cfg, x, state, spikes[t], [buf[t] for buf in saved])
        return (spikes, *saved)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        x_seq, dynamics, cfg, save = inputs
        ctx.mark_non_differentiable(*output[1:])
        ctx.dynamics, ctx.cfg = dynamics, cfg
        if save:
            ctx.names = sorted(resting(dynamics, cfg, x_seq[0, :1]))
            ctx.save_for_backward(x_seq, *output[1:])

    @staticmethod
    def backward(ctx: Any, grad_s: Tensor, *_: Tensor) -> tuple[Tensor, None, None, None]:
        x_seq, *saved = ctx.saved_tensors
        bwd = _compiled_scan()[1]
        grad_x = _empty(x_seq)
        grad_state = {name: torch.zeros_like(x_seq[0]) for name in ctx.names}
        for t in range(x_seq.shape[0] - 1, -1, -1):
            state = {name: buf[t] for name, buf in zip(ctx.names, saved)}
            grad_state = bwd(ctx.dynamics, ctx.cfg, x_seq[t], state, grad_s[t].contiguous(), grad_state, grad_x[t])
        return grad_x, None, None, None


def _autograd_loop(dynamics: Dynamics, cfg: FireConfig, x_seq: Tensor) -> Tensor:
    """The compiled step under autograd (for dynamics with learnable parameters)."""
    step = _compiled()
    state = resting(dynamics, cfg, x_seq[0])
    out = []
    # unbind, not x_seq[t]: one backward node for all steps (T selects would each add a full
    # [T, ...] zero tensor in backward: O(T²) memory traffic).
    for x in x_seq.unbind(0):
        s, state = step(dynamics, cfg, x, state)
        out.append(s)
    return torch.stack(out)


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
    first = _status != "compiled"
    learnable = any(p.requires_grad for p in dynamics.parameters())
    try:
        if learnable and torch.is_grad_enabled():
            out = _autograd_loop(dynamics, cfg, x_seq)
        else:
            save = torch.is_grad_enabled() and x_seq.requires_grad
            out = Scan.apply(x_seq, dynamics, cfg, save)[0]
        if first:
            _probe_backward(dynamics, cfg, x_seq[0], learnable)
    except Exception as err:  # a compiler that cannot build here: say why once, then fall back
        if not first:
            raise
        _fail(err)
        return None
    _status = "compiled"
    return out


def _probe_backward(dynamics: Dynamics, cfg: FireConfig, x: Tensor, learnable: bool) -> None:
    """Compile the backward now, where a failure can still fall back (not in the middle of backward)."""
    if not torch.is_grad_enabled():
        return
    state = {k: v.detach() for k, v in resting(dynamics, cfg, x).items()}
    if not learnable:
        zeros = {k: torch.zeros_like(v) for k, v in state.items()}
        _compiled_scan()[1](dynamics, cfg, x.detach(), state, torch.zeros_like(x), zeros, torch.empty_like(x))
        return
    xp = x.detach().clone().requires_grad_(True)
    s, state = _compiled()(dynamics, cfg, xp, state)
    # The spikes of a step may not depend on its own input (a current-based neuron): then the
    # state, which carries the input forward, does.
    outs = [t for t in (s, *state.values()) if t.requires_grad]
    if outs:
        torch.autograd.grad(torch.stack([t.sum() for t in outs]).sum(), xp, allow_unused=True)
