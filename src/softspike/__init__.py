"""softspike: spiking neural networks in PyTorch, hard forward, soft backward.

>>> import torch, softspike
>>> from softspike import neuron, surrogate
>>> lif = neuron.LIFNode(tau=2.0, surrogate=surrogate.Sigmoid(alpha=4.0))
>>> lif(torch.tensor([3.0, 0.5]))
tensor([1., 0.])
"""

from softspike import encoding, neuron, surrogate
from softspike.core.hookspecs import hookimpl
from softspike.core.registry import get_registry, reload_registry
from softspike.functional import detach, reset, set_step_mode

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # `softspike.registry` is the process-wide registry, discovered on first access, never at import.
    if name == "registry":
        return get_registry()
    raise AttributeError(f"module 'softspike' has no attribute {name!r}")


__all__ = [
    "detach", "encoding", "get_registry", "hookimpl", "neuron", "reload_registry", "reset", "set_step_mode",
    "surrogate",
]
