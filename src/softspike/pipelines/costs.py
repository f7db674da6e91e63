"""How a block or a stage is weighed and timed: one rule for the planner's prediction
(`planning.profile`, `planning.partition`) and for the measurement of a running stage (`running.worker`).

Memory of a stage s holding blocks [a, b) under a schedule that keeps k_s micro-batches in flight:

    memory_s = state + k_s · input + k_s · saved          (saved once, not k_s times, with recomputation)

- state: parameters and buffers, the parameters' gradients, and the optimizer's state (Adam: two
  moments, 2 x the parameters; a running stage counts the state its optimizer really holds);
- input: the [T, b, ...] tensor the stage receives per micro-batch (its storage: a constant code is a
  broadcast view of the batch);
- saved: what autograd saves for backward during the stage's forward, counted with
  `saved_tensors_hooks`, each storage once, *without* the parameters and buffers (they are state) and
  *without* the stage's input (it is `input`).

k_s is M under GPipe and min(M, S - s) under 1F1B (`in_flight`). Time is the forward + backward of one
micro-batch, on the CPU with this thread's CPU clock where asked (other processes on a shared
machine do not stretch it).
"""

from __future__ import annotations

import copy
import functools
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import Tensor, nn

Clock = Literal["wall", "thread"]
Schedule = Literal["gpipe", "1f1b", "interleaved_1f1b"]

#: Bytes of optimizer state per parameter byte the planner assumes (Adam: exp_avg and exp_avg_sq).
ADAM_STATE_FACTOR = 2


def nbytes(tensors: Tensor | Iterable[Any]) -> int:
    """Bytes of a tensor's elements, or of the tensors among an iterable's items."""
    if isinstance(tensors, Tensor):
        return tensors.numel() * tensors.element_size()
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, Tensor))


def storage_bytes(t: Tensor) -> int:
    """Bytes of the storage behind a tensor (a broadcast or sliced view counts what it holds)."""
    try:
        return int(t.untyped_storage().nbytes())
    except RuntimeError:  # tensors without storage (e.g. wrapper subclasses)
        return nbytes(t)


def _key(t: Tensor) -> int:
    try:
        return int(t.untyped_storage().data_ptr())
    except RuntimeError:
        return id(t)


def module_bytes(module: nn.Module) -> int:
    """Parameters and buffers of a module, in bytes."""
    return nbytes(module.parameters()) + nbytes(module.buffers())


def state_bytes(module: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Parameters, buffers, the parameters' gradients and the optimizer's tensors (its per-parameter
    step counters aside: 4-byte scalars, not what a plan is about)."""
    params = list(module.parameters())
    opt = sum(nbytes(v for v in optimizer.state[p].values() if isinstance(v, Tensor) and v.dim() > 0)
              for p in params if p in optimizer.state)
    return module_bytes(module) + nbytes(params) + opt


def predicted_state_bytes(module: nn.Module) -> int:
    """The planner's state of a module before any step: parameters and buffers, gradients, Adam's moments."""
    return module_bytes(module) + (1 + ADAM_STATE_FACTOR) * nbytes(module.parameters())


class SavedBytes:
    """Counts what autograd saves for backward while active: each storage once, parameters, buffers and
    the `exclude`d tensors (a stage's input) not at all. `owner` says which counter (e.g. a block index)
    a newly seen storage is charged to; a storage whose key is `input_key` (the owner's input) goes to
    `inputs[owner]` instead."""

    def __init__(self, modules: Iterable[nn.Module], exclude: Iterable[Tensor] = ()) -> None:
        self.skip = {_key(t) for m in modules for t in (*m.parameters(), *m.buffers())}
        self.skip |= {_key(t) for t in exclude}
        self.seen: set[int] = set()
        self.owner: Any = None
        self.by_owner: dict[Any, int] = {}
        self.input_key: int | None = None
        self.inputs: dict[Any, int] = {}

    def _pack(self, t: Tensor) -> Tensor:
        key = _key(t)
        if key not in self.seen and key not in self.skip:
            self.seen.add(key)
            into = self.inputs if key == self.input_key else self.by_owner
            into[self.owner] = into.get(self.owner, 0) + storage_bytes(t)
        return t

    @property
    def total(self) -> int:
        return sum(self.by_owner.values())

    @contextmanager
    def counting(self) -> Iterator[SavedBytes]:
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield self


def in_flight(schedule: Schedule, stage: int, n_stages: int, microbatches: int) -> int:
    """Micro-batches whose activations stage `stage` holds at once under `schedule`."""
    if schedule == "gpipe":
        return microbatches
    return min(microbatches, n_stages - stage)


def stage_memory(state: int, input_bytes: int, saved: int, held: int, recompute: bool = False) -> int:
    """The module docstring's memory_s."""
    return state + held * input_bytes + (saved if recompute else held * saved)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock_ms(clock: Clock = "wall") -> float:
    """Now, in ms: wall-clock time, or the CPU time of this thread ("thread": unaffected by other
    processes on a shared machine; equal to wall time for one-threaded CPU work on an idle one)."""
    return (time.perf_counter() if clock == "wall" else time.thread_time()) * 1e3


def timed(fn: Callable[[], Any], device: torch.device, clock: Clock = "wall") -> float:
    """Milliseconds `fn` takes on `device` (synchronised on a GPU)."""
    sync(device)
    t0 = clock_ms(clock)
    fn()
    sync(device)
    return clock_ms(clock) - t0


def stage_input(shape: tuple[int, ...], device: torch.device,
                encode: Callable[[Tensor], Tensor] | None = None) -> Callable[[], Tensor]:
    """Random inputs for a measured stage: spikes [T, b, ...] as a later stage receives them, or, with
    `encode` (stage 0), the encoding of a random batch `shape` = [b, *input_shape], as stage 0 holds it."""
    if encode is None:
        return lambda: torch.rand(shape, device=device).round_().requires_grad_()

    def encoded() -> Tensor:
        with torch.no_grad():
            return encode(torch.rand(shape, device=device))

    return encoded


def measure_stage(module: nn.Module, make_input: Callable[[], Tensor], device: torch.device,
                  optimizer: torch.optim.Optimizer, held: int = 1, recompute: bool = False,
                  repeats: int = 5) -> dict[str, Any]:
    """A running stage measured on a copy of it (so batch-norm statistics and monitors of the trained
    stage are not touched), on inputs `make_input()` of the shape the pipeline sends (`stage_input`):
    the fastest fwd+bwd (ms) of one micro-batch over `repeats` runs after a warm-up, on the CPU with this
    thread's CPU time (wall time, synchronised, on a GPU); the input's bytes, the bytes saved for its
    backward and the state, and the stage's memory with `held` micro-batches in flight, all by the
    module docstring's rule."""
    probe = copy.deepcopy(module).train()
    if getattr(probe, "recompute", False):  # a recomputing stage: weigh what its backward rebuilds
        setattr(probe, "recompute", False)  # noqa: B010 (an nn.Module attribute, not a submodule)
    clock: Clock = "wall" if device.type == "cuda" else "thread"
    times: list[float] = []
    saved = inp = 0
    for _ in range(repeats + 1):
        x = make_input()
        counter = SavedBytes([probe], exclude=[x])
        times.append(timed(functools.partial(_forward_backward, probe, x, counter), device, clock))
        saved, inp = counter.total, storage_bytes(x)
    state = state_bytes(module, optimizer)
    return {"time_ms": min(times[1:]), "input_bytes": inp, "activation_bytes": saved, "state_bytes": state,
            "memory_bytes": stage_memory(state, inp, saved, held, recompute), "held": held}


def _forward_backward(module: nn.Module, x: Tensor, counter: SavedBytes) -> None:
    with counter.counting():
        out = module(x)
    out.backward(torch.ones_like(out))


def peak_memory(device: torch.device) -> dict[str, int]:
    """The process's peak memory: CUDA allocator peak on a GPU, the resident set size on the CPU."""
    if device.type == "cuda":
        return {"peak_cuda_bytes": int(torch.cuda.max_memory_allocated(device))}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_bytes": int(rss if sys.platform == "darwin" else rss * 1024)}
