"""The 2020 `ModelPipeline` on one machine: a network split by hand over devices, run on micro-batches.

Subclass it and `append(module, device)` the pieces in order (one per device); then

    net(x, split_sizes)            one time step of single-step neurons for the batch x, split into
                                   micro-batches of `split_sizes` rows that flow through the stages
                                   as a wavefront: at tick τ stage j works on micro-batch τ - j;
    net.constant_forward(x, T)     T time steps of the constant input x, the wavefront running over
                                   time instead: at tick τ stage j works on time step τ - j.

Micro-batches never share neuron state. Every single-step neuron keeps its membrane for the whole
batch between calls (as without the pipeline, so `neuron.v` is what the unsplit network has); during
a call it is split into one slot per micro-batch, each micro-batch runs with its own slot swapped in,
and the slots are joined again at the end. Hence, for every `split_sizes`,

    net(x, split_sizes) == net(x, B)  at every time step, forward and gradients,

as long as the stages treat samples independently (batch norm in training mode normalises over
each micro-batch instead, as any micro-batched pipeline does: compare in eval mode).

On CUDA the stages overlap the way they did in 2020: kernels are queued asynchronously, copies
between devices are non-blocking, and the wavefront gives each device independent work at every
tick. On CPU stages run one after the other (same results, no overlap). Nothing here was run on a
GPU when it was written: the CPU path is what the tests check.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from softspike.core.dynamics import State
from softspike.core.errors import SoftspikeError, StateError
from softspike.core.neuron import Neuron


class PipelineError(SoftspikeError, ValueError):
    """A ModelPipeline used in a way it cannot run (no stages, bad split sizes or devices)."""


def resolve_device(gpu_id: int | str | torch.device) -> torch.device:
    """The 2020 form `append(m, "2")` means cuda:2; "cpu", "cuda:1" and torch.device work too."""
    if isinstance(gpu_id, bool):
        raise PipelineError(f"ModelPipeline.append: device must be a GPU id, a name or a torch.device, got {gpu_id}")
    if isinstance(gpu_id, int) or (isinstance(gpu_id, str) and gpu_id.strip().isdigit()):
        gpu_id = f"cuda:{int(gpu_id)}"
    try:
        dev = torch.device(gpu_id)
    except (RuntimeError, TypeError, ValueError):
        raise PipelineError(
            f"ModelPipeline.append: {gpu_id!r} is not a device; give a GPU id ('0'), 'cuda:1' or 'cpu'"
        ) from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise PipelineError(
            f"ModelPipeline.append: {dev} is not available here ({count} CUDA devices); "
            "append the stage to 'cpu' to run it on the CPU"
        )
    return dev


Slot = tuple["Tensor | float", State]


def _split(value: Tensor | float, state: State, sizes: list[int], where: str) -> list[Slot]:
    """One (membrane, extra state) slot per micro-batch, as views of the whole-batch state."""
    if not isinstance(value, Tensor):  # at rest: every micro-batch starts from rest
        return [(value, {}) for _ in sizes]
    batch = sum(sizes)
    if value.dim() == 0 or value.shape[0] != batch:
        raise StateError(
            f"{where}: the kept membrane is for a batch of {value.shape[0] if value.dim() else 1} samples, this "
            f"input has {batch}. Call reset() on the network (softspike.reset(net)) before a new batch."
        )
    vs = value.split(sizes)
    parts = {k: t.split(sizes) if t.dim() and t.shape[0] == batch else [t] * len(sizes) for k, t in state.items()}
    return [(vs[i], {k: p[i] for k, p in parts.items()}) for i in range(len(sizes))]


def _join(slots: list[Slot]) -> Slot:
    """Whole-batch state from the micro-batch slots (the inverse of `_split`)."""
    values = [v for v, _ in slots]
    if len(slots) == 1:
        return slots[0]
    if not all(isinstance(v, Tensor) for v in values):  # a stage that never ran stays at rest
        return slots[0]
    state = {k: torch.cat([s[k] for _, s in slots]) if slots[0][1][k].dim() else slots[0][1][k]
             for k in slots[0][1]}
    return torch.cat(values), state  # type: ignore[arg-type]


class ModelPipeline(nn.Module):
    """Base class of a network split over devices by hand (the 2020 softbp API); see the module doc."""

    def __init__(self) -> None:
        super().__init__()
        self.module_list = nn.ModuleList()
        #: The device of each appended module, as strings ("cuda:0", "cpu"), in order (2020 name).
        self.gpu_list: list[str] = []

    def append(self, nn_module: nn.Module, gpu_id: int | str | torch.device) -> None:
        """Add the next stage: `nn_module` runs on `gpu_id` ("2" means cuda:2, as in 2020; or "cpu")."""
        if not isinstance(nn_module, nn.Module):
            raise PipelineError(f"ModelPipeline.append: expected an nn.Module, got {type(nn_module).__name__}")
        dev = resolve_device(gpu_id)
        self.module_list.append(nn_module.to(dev))
        self.gpu_list.append(str(dev))

    def reset(self) -> None:
        """Every neuron back to rest (call between samples, as the 2020 examples' `reset_()` does)."""
        for m in self.module_list.modules():
            if isinstance(m, Neuron):
                m.reset()

    def _stages(self) -> list[tuple[nn.Module, str, list[Neuron]]]:
        if not self.module_list:
            raise PipelineError(f"{type(self).__name__}: no stages; append(module, device) at least one first")
        return [(m, d, [n for n in m.modules() if isinstance(n, Neuron)])
                for m, d in zip(self.module_list, self.gpu_list, strict=True)]

    def forward(self, x: Tensor, split_sizes: int | Sequence[int]) -> Tensor:
        """One time step for the batch x, run as micro-batches of `split_sizes` rows (an int, or a
        list of sizes summing to the batch, as `torch.split` takes). Returns the whole batch's output."""
        stages = self._stages()
        if not isinstance(x, Tensor) or x.dim() == 0:
            raise PipelineError(f"{type(self).__name__}: expected a batch tensor [B, ...], got {x!r:.60}")
        chunks = self._split_input(x, split_sizes)
        sizes = [c.shape[0] for c in chunks]
        K, S = len(chunks), len(stages)
        slots = [[_split(n.v, n.state, sizes, f"{type(n).__name__} in stage {j}") for n in neurons]
                 for j, (_, _, neurons) in enumerate(stages)]
        for tick in range(K + S - 1):
            for j in range(S - 1, -1, -1):  # later stages first: each device gets its work queued at once
                k = tick - j
                if not 0 <= k < K:
                    continue
                module, device, neurons = stages[j]
                for n, per_mb in zip(neurons, slots[j], strict=True):
                    n.v, n.state = per_mb[k]
                chunks[k] = module(chunks[k].to(device, non_blocking=True))
                for n, per_mb in zip(neurons, slots[j], strict=True):
                    per_mb[k] = (n.v, n.state)
        for (_, _, neurons), per_stage in zip(stages, slots, strict=True):
            for n, per_mb in zip(neurons, per_stage, strict=True):
                n.v, n.state = _join(per_mb)
        return torch.cat(chunks, dim=0)

    def _split_input(self, x: Tensor, split_sizes: int | Sequence[int]) -> list[Tensor]:
        where = f"{type(self).__name__}.forward"
        B = x.shape[0]
        if isinstance(split_sizes, (bool, str, bytes)) or not isinstance(split_sizes, (int, Sequence)):
            raise PipelineError(f"{where}: split_sizes must be an int or a list of ints, got {split_sizes!r}")
        if isinstance(split_sizes, int):
            if split_sizes < 1:
                raise PipelineError(f"{where}: split_sizes must be >= 1, got {split_sizes}")
        elif any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in split_sizes) or sum(split_sizes) != B:
            raise PipelineError(
                f"{where}: split sizes {list(split_sizes)} must be positive and sum to the batch size {B}"
            )
        return list(x.split(split_sizes if isinstance(split_sizes, int) else list(split_sizes), dim=0))

    def constant_forward(self, x: Tensor, T: int, reduce: bool = True) -> Tensor:
        """T time steps with the same input x: the sum of the T outputs (reduce=True), or them stacked
        [T, B, ...] (reduce=False). Equals T calls of `forward(x, B)` in a row, without micro-batches:
        the stages work on consecutive time steps at once."""
        stages = self._stages()
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise PipelineError(f"{type(self).__name__}.constant_forward: T must be an int >= 1, got {T!r}")
        S = len(stages)
        first = x.to(stages[0][1], non_blocking=True)
        held: list[Tensor | None] = [None] * T  # held[t]: time step t's activation between stages
        outputs: list[Tensor] = []
        for tick in range(T + S - 1):
            for j in range(S - 1, -1, -1):
                t = tick - j
                if not 0 <= t < T:
                    continue
                module, device = stages[j][0], stages[j][1]
                inp = first if j == 0 else held[t]
                assert inp is not None  # stage j-1 produced time step t at the previous tick
                out = module(inp.to(device, non_blocking=True))
                if j == S - 1:
                    outputs.append(out)
                    held[t] = None
                else:
                    held[t] = out
        if reduce:
            total = outputs[0]
            for out in outputs[1:]:
                total = total + out
            return total
        return torch.stack(outputs)
