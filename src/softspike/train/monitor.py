"""Firing-rate monitor: forward hooks on a network's neuron layers, no change to the neurons."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


class FiringRates:
    """Mean firing rate of each neuron layer over the calls since the last `reset()`.

    The hook only adds detached sums (no host sync in the hot loop); `rates()` reads them out."""

    def __init__(self, layers: Sequence[tuple[str, nn.Module]]) -> None:
        self.names = [name for name, _ in layers]
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self._handles: list[RemovableHandle] = [m.register_forward_hook(self._hook(n)) for n, m in layers]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: Tensor) -> None:
            if not module.training:
                return
            s = out.detach().float().sum()
            self._sums[name] = self._sums[name] + s if name in self._sums else s
            self._counts[name] = self._counts.get(name, 0) + out.numel()

        return hook

    def reset(self) -> None:
        self._sums.clear()
        self._counts.clear()

    def rates(self) -> dict[str, float]:
        return {n: float(self._sums[n]) / self._counts[n] for n in self.names if self._counts.get(n)}

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> FiringRates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["FiringRates"]
