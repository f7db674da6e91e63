"""The generic fast path: any dynamics, one compiled step per time step.

`torch.compile` (inductor) of one neuron step (the dynamics' charge, threshold and after_fire, the
library's fire and reset) turns the dozens of small elementwise ops of a step into one fused kernel;
Python loops over T. Compiling the whole time loop instead is a trap (minutes of compile time,
slower than eager: DESIGN.md), and so, measured here, is compiling chunks of a few steps.

For a dynamics without learnable parameters the loop is one autograd Function (a scan):

    forward    S(t), state(t) = step(X(t), state(t-1)) without a graph; the kernel writes state(t)
               straight into the buffer that keeps it for backward, and the next step reads it there
    backward   from t = T-1 down: (dL/dX(t), dL/dstate(t-1)) = vjp of step at (X(t), state(t-1))
               applied to (dL/dS(t), dL/dstate(t)), by `torch.func.vjp`, compiled: the step is
               recomputed and differentiated in one fused kernel; dL/dstate lives in two buffers
               per variable, used in turn

so it keeps only the state per step, builds no per-step graph, and allocates nothing per step (the
compiled steps write into the caller's buffers and return nothing). A dynamics with learnable
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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics, State
from softspike.core.step import FireConfig, neuron_step, resting
from softspike.core.surrogate import Surrogate
from softspike.kernels.pool import POOL

log = logging.getLogger("softspike.kernels")

#: Below this many elements per time step, the seconds a compile costs are never paid back (and
#: every new parameter value recompiles): `backend="auto"` then runs the reference loop.
MIN_NUMEL = 4096
DISABLE_ENV = "SOFTSPIKE_NO_COMPILE"

_lock = threading.Lock()
_step: Callable[..., tuple[Tensor, State]] | None = None
_scan_steps: tuple[Callable[..., None], Callable[..., None]] | None = None
_status = "not tried yet"
_failed = False
_no_compiler: str | None = None  # why not, found once (a file-system probe never runs in traced code)
_compiler_probed = False


def traceable_spike(z: Tensor, gate: Surrogate) -> Tensor:
    """Θ(z) forward, σ'(z) backward, in ops inductor fuses (no autograd.Function)."""
    zd = z.detach()
    return (zd >= 0).to(z.dtype) + (z - zd) * gate.derivative(zd)


def _hard(z: Tensor, gate: Surrogate) -> Tensor:
    return (z >= 0).to(z.dtype)


def _eager_step(dynamics: Dynamics, cfg: FireConfig, x: Tensor, state: State) -> tuple[Tensor, State]:
    return neuron_step(dynamics, cfg, x, state, traceable_spike)


def _forward_step(dynamics: Dynamics, cfg: FireConfig, x: Tensor, state: State, s_out: Tensor,
                  state_out: list[Tensor]) -> None:
    # Writing into the caller's buffers here (not after the call) lets inductor store straight into
    # them from the fused kernel; returning nothing, it allocates no output tensors per step.
    s, new = neuron_step(dynamics, cfg, x, state, _hard)
    s_out.copy_(s)
    for buf, name in zip(state_out, sorted(state)):
        buf.copy_(new[name])


def _backward_step(dynamics: Dynamics, cfg: FireConfig, x: Tensor, state: State, grad_s: Tensor,
                   grad_state: State, gx_out: Tensor, grad_state_out: list[Tensor]) -> None:
    def step(x_: Tensor, state_: State) -> tuple[Tensor, State]:
        return neuron_step(dynamics, cfg, x_, state_, traceable_spike)

    _, vjp = torch.func.vjp(step, x, state)[:2]
    gx, gstate = vjp((grad_s, grad_state))
    gx_out.copy_(gx)
    for buf, name in zip(grad_state_out, sorted(state)):
        buf.copy_(gstate[name])


def status() -> tuple[bool, str]:
    """(usable, why): whether the compiled step can run here."""
    global _no_compiler, _compiler_probed
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False, f"disabled by {DISABLE_ENV}=1"
    if not _compiler_probed:
        if not any(shutil.which(c) for c in (os.environ.get("CXX") or "c++", "g++", "clang++")):
            _no_compiler = "unavailable: no C++ compiler for torch.compile's CPU code (set CXX, or install g++)"
        _compiler_probed = True
    if _no_compiler is not None and not _failed:
        return False, _no_compiler
    return not _failed, _status


def traced_reason() -> str | None:
    """Why the compiled step must not run now: inside a graph torch.compile or export is tracing, the
    surrounding compile fuses the reference loop's steps itself (and the probes above cannot be traced)."""
    if torch.compiler.is_compiling():
        return "inside torch.compile/export: the surrounding graph fuses the reference loop"
    return None


@contextmanager
def _outside_saved_tensor_hooks() -> Iterator[None]:
    """Run the compiled step's `torch.func.vjp` as if no saved-tensor hooks were set.

    torch.func refuses to run under `saved_tensors_hooks` (the training loop's `compact_saved_spikes`,
    activation offloading, checkpointing); the vjp here saves nothing that outlives the call, so the
    hooks have nothing to do with it. They are taken off the (thread-local) stack and put back in
    order afterwards, and the disabled-hooks state torch.func sets is restored even when the call fails
    (a failed dynamo trace otherwise leaves it set, and every later `saved_tensors_hooks` raises).
    """
    autograd = torch._C._autograd
    disabled = autograd._saved_tensors_hooks_get_disabled_error_message()
    hooks = []
    while (top := autograd._top_saved_tensors_default_hooks(True)) is not None:
        hooks.append(top)
        autograd._pop_saved_tensors_default_hooks()
    try:
        yield
    finally:
        if disabled is None:
            autograd._saved_tensors_hooks_enable()
        else:
            autograd._saved_tensors_hooks_disable(disabled)
        for pack, unpack in reversed(hooks):
            autograd._push_saved_tensors_default_hooks(pack, unpack)


def _compiled() -> Callable[..., tuple[Tensor, State]]:
    global _step
    with _lock:
        if _step is None:
            _step = torch.compile(_eager_step, dynamic=False)
        return _step


def _compiled_scan() -> tuple[Callable[..., None], Callable[..., None]]:
    global _scan_steps
    with _lock:
        if _scan_steps is None:
            # Static shapes as with dynamic=False, but set by `_static_shapes` once per time loop:
            # dynamic=False patches dynamo's config around every call (~3.5 µs, one call per step).
            _scan_steps = (torch.compile(_forward_step), torch.compile(_backward_step))
        return _scan_steps


def _static_shapes() -> AbstractContextManager[None]:
    """What `torch.compile(dynamic=False)` sets per call, for the calls of a whole time loop."""
    return torch._dynamo.config.patch(automatic_dynamic_shapes=False, assume_static_by_default=True)


def _empty(like: Tensor) -> Tensor:
    return POOL.empty(like.shape, like.dtype) if like.device.type == "cpu" else torch.empty_like(like)


def _pair(like: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """Room for `count` slots shaped like `like`, even slots in one tensor and odd ones in another.

    A step reads slot k and writes slot k + 1: two different tensors, never two views of one (inputs
    that alias, one of them written, are a case dynamo and AOTAutograd treat apart).
    """
    return _empty_seq(like, (count + 1) // 2), _empty_seq(like, count // 2)


def _slots(pair: tuple[Tensor, Tensor] | list[Tensor]) -> list[Tensor]:
    """The slots of a pair in order (views made once: a select per step and tensor costs ~1 µs)."""
    even, odd = pair[0].unbind(0), pair[1].unbind(0)
    return [(even if k % 2 == 0 else odd)[k // 2] for k in range(len(even) + len(odd))]


def _empty_seq(like: Tensor, n: int) -> Tensor:
    shape = (n, *like.shape)
    return POOL.empty(shape, like.dtype) if like.device.type == "cpu" else like.new_empty(shape)


class Scan(torch.autograd.Function):
    """(X [T, ...], dynamics, cfg, save) -> (S, then with `save` per state name the `_pair` whose
    slot t holds state(t-1)).

    Per step the Python loop only picks views made beforehand: at a few hundred neurons per core the
    compiled step's own call costs about as much as its kernel.
    """

    @staticmethod
    def forward(x_seq: Tensor, dynamics: Dynamics, cfg: FireConfig, save: bool) -> tuple[Tensor, ...]:
        fwd, _ = _compiled_scan()
        spikes = _empty(x_seq)
        rest = resting(dynamics, cfg, x_seq[0])
        names = sorted(rest)
        # Slot t of a variable holds state(t-1) (slot 0: at rest); step t writes slot t + 1, which is
        # both the next step's input and what backward reads: no copy of the state per step. Without
        # `save` two slots take turns.
        steps = x_seq.shape[0]
        pairs = [_pair(x_seq[0], steps + 1 if save else 2) for _ in names]
        slots = list(zip(*(_slots(pair) for pair in pairs)))  # per slot, one view per name
        for name, view in zip(names, slots[0]):
            view.copy_(rest[name])
        states = [dict(zip(names, views)) for views in slots]
        outs = [list(views) for views in slots]
        with _static_shapes():
            for t, (x, s) in enumerate(zip(x_seq.detach().unbind(0), spikes.unbind(0))):
                i, o = (t, t + 1) if save else (t % 2, (t + 1) % 2)
                fwd(dynamics, cfg, x, states[i], s, outs[o])
        return (spikes, *(buf for pair in pairs for buf in pair)) if save else (spikes,)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        x_seq, dynamics, cfg, save = inputs
        ctx.mark_non_differentiable(*output[1:])
        # No gradient ever flows into the saved states: without this autograd would hand backward
        # a zero-filled tensor per buffer (many MB of fresh pages per call).
        ctx.set_materialize_grads(False)
        ctx.dynamics, ctx.cfg = dynamics, cfg
        if save:
            ctx.names = sorted(resting(dynamics, cfg, x_seq[0, :1]))
            ctx.save_for_backward(x_seq, *output[1:])

    @staticmethod
    def backward(ctx: Any, grad_s: Tensor | None, *_: Tensor | None) -> tuple[Tensor | None, None, None, None]:
        if grad_s is None:  # the spikes took no part in the loss
            return None, None, None, None
        x_seq, *bufs = ctx.saved_tensors
        names = ctx.names
        bwd = _compiled_scan()[1]
        grad_x = _empty(x_seq)
        grad_s = grad_s.contiguous()
        states = [dict(zip(names, views)) for views in zip(*(_slots(bufs[2 * j:2 * j + 2]) for j in range(len(names))))]
        # dL/dstate(t) in, dL/dstate(t-1) out: two slots per variable take turns.
        grads = list(zip(*(_slots(_pair(x_seq[0], 2)) for _ in names)))
        for view in grads[0]:
            view.zero_()
        grads_in = [dict(zip(names, views)) for views in grads]
        grads_out = [list(views) for views in grads]
        steps = x_seq.shape[0]
        backwards = zip(x_seq.detach().unbind(0)[::-1], grad_s.unbind(0)[::-1], grad_x.unbind(0)[::-1])
        with _static_shapes(), _outside_saved_tensor_hooks():
            for k, (x, gs, gx) in enumerate(backwards):
                bwd(ctx.dynamics, ctx.cfg, x, states[steps - 1 - k], gs, grads_in[k % 2], gx, grads_out[(k + 1) % 2])
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
        # Under no_grad, as autograd runs Scan.backward: the compiled step is guarded on grad mode,
        # and the probe would otherwise compile a version backward never uses.
        with _static_shapes(), torch.no_grad(), _outside_saved_tensor_hooks():
            _compiled_scan()[1](dynamics, cfg, x.detach(), state, torch.zeros_like(x), zeros, torch.empty_like(x),
                                [torch.empty_like(x) for _ in state])
        return
    xp = x.detach().clone().requires_grad_(True)
    s, state = _compiled()(dynamics, cfg, xp, state)
    # The spikes of a step may not depend on its own input (an input that reaches the membrane
    # through a state variable, one step later): then the state, which carries it forward, does.
    outs = [t for t in (s, *state.values()) if t.requires_grad]
    if outs:
        torch.autograd.grad(torch.stack([t.sum() for t in outs]).sum(), xp, allow_unused=True)
