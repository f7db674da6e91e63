"""Layers for multi-step networks: run a stateless layer over [T, B, ...] as one [T*B, ...] call."""

from __future__ import annotations

from torch import Tensor, nn


class MultiStep(nn.Module):
    """Wrap a stateless module (Linear, Conv2d, BatchNorm2d, pooling...) for [T, B, ...] input.

    The time and batch dims are merged, the module runs once, and they are split again, which is
    both faster than a loop over T and exact for layers that treat samples independently.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2:
            name = type(self.module).__name__
            raise ValueError(f"MultiStep({name}): input must be [T, B, ...], got shape {tuple(x.shape)}")
        T, B = x.shape[0], x.shape[1]
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, (T, B))
