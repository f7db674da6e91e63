"""Firing-rate monitor: forward hooks on a network's neuron layers, no change to the neurons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


def time_batch_dims(module: nn.Module) -> int:
    """How many leading dims of a neuron layer's output are time and batch: [T, B, ...] or [B, ...]."""
    return 1 if getattr(module, "step_mode", "m") == "s" else 2


class FiringRates:
    """Mean firing rate of each neuron layer over the calls since the last `reset()`.

    The hook only adds detached sums (no host sync in the hot loop); `rates()` reads them out. With
    `per_neuron=True` it also sums each neuron's spikes (`neuron_rates()`); with
    `training_only=False` it counts calls in eval mode too."""

    def __init__(self, layers: Sequence[tuple[str, nn.Module]], per_neuron: bool = False,
                 training_only: bool = True) -> None:
        self.names = [name for name, _ in layers]
        self.per_neuron, self.training_only = per_neuron, training_only
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self._neuron_sums: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = [m.register_forward_hook(self._hook(n)) for n, m in layers]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: Tensor) -> None:
            if self.training_only and not module.training:
                return
            s = out.detach().float()
            total = s.sum()
            self._sums[name] = self._sums[name] + total if name in self._sums else total
            self._counts[name] = self._counts.get(name, 0) + out.numel()
            if self.per_neuron:
                per = s.sum(dim=tuple(range(time_batch_dims(module))))
                self._neuron_sums[name] = self._neuron_sums[name] + per if name in self._neuron_sums else per

        return hook

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()
        self._neuron_sums.clear()

    def rates(self) -> dict[str, float]:
        return {n: float(self._sums[n]) / self._counts[n] for n in self.names if self._counts.get(n)}

    def neuron_rates(self) -> dict[str, Tensor]:
        """Each neuron's mean firing rate (a CPU tensor of the layer's neuron shape), per layer."""
        out = {}
        for n in self.names:
            if n in self._neuron_sums:
                per = self._neuron_sums[n]
                out[n] = (per * (per.numel() / self._counts[n])).cpu()
        return out

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> FiringRates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["FiringRates", "time_batch_dims"]
