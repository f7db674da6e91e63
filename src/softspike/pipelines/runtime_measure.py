"""What a stage costs, measured on its own process: fwd+bwd time per micro-batch and memory.

Measured on a copy of the stage (so batch-norm statistics and monitors of the trained stage are not
touched), on a random micro-batch of the shape the pipeline sends, after training. Activation memory is
what autograd saves for backward (counted with `saved_tensors_hooks`), times the micro-batches a
schedule keeps in flight on that stage (GPipe: M; 1F1B: min(M, S - stage)).
"""

from __future__ import annotations

import copy
import resource
import sys
from typing import Any

import torch
from torch import Tensor, nn

from softspike.pipelines.profile import Clock, clock_ms


def _saved_bytes(module: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        # Storage identity: a tensor saved twice (or a view of one saved) counts once.
        try:
            key = t.untyped_storage().data_ptr()
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        except RuntimeError:  # tensors without storage (e.g. wrapper subclasses)
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    return out, sum(seen.values())


def measure_stage(module: nn.Module, in_shape: tuple[int, ...], first: bool, device: torch.device,
                  repeats: int = 5) -> dict[str, Any]:
    """The fastest fwd+bwd (ms) of one micro-batch over `repeats` runs after a warm-up, and the bytes
    saved for its backward. On the CPU the clock is this thread's CPU time, as the profile's "thread"
    clock: other processes on a shared machine do not stretch it (on a GPU: wall time, synchronised)."""
    probe = copy.deepcopy(module).train()
    clock: Clock = "wall" if device.type == "cuda" else "thread"
    times: list[float] = []
    saved = 0
    for _ in range(repeats + 1):
        x = torch.rand(in_shape, device=device).round_().requires_grad_(not first)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = clock_ms(clock)
        out, saved = _saved_bytes(probe, x)
        out.backward(torch.ones_like(out))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(clock_ms(clock) - t0)
    return {"time_ms": min(times[1:]), "activation_bytes": saved}


def tensor_bytes(module: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Parameters, their gradients and the optimizer's state (e.g. Adam's two moments), in bytes."""
    total = 0
    for p in module.parameters():
        total += 2 * p.numel() * p.element_size()  # the parameter and its gradient
    for state in optimizer.state.values():
        for v in state.values():
            if isinstance(v, Tensor):
                total += v.numel() * v.element_size()
    return total


def peak_memory(device: torch.device) -> dict[str, int]:
    """The process's peak memory: CUDA allocator peak on a GPU, the resident set size on the CPU."""
    if device.type == "cuda":
        return {"peak_cuda_bytes": int(torch.cuda.max_memory_allocated(device))}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_bytes": int(rss if sys.platform == "darwin" else rss * 1024)}
