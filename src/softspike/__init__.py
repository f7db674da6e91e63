"""softspike: spiking neural networks in PyTorch, hard forward, soft backward.

>>> import torch, softspike
>>> from softspike import neuron, surrogate
>>> lif = neuron.LIFNode(tau=2.0, surrogate=surrogate.Sigmoid(alpha=4.0))
>>> lif(torch.tensor([3.0, 0.5]))
tensor([1., 0.])
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Not `typing.TYPE_CHECKING`: importing typing (tens of milliseconds on a busy machine) would come
# before the `softspike` program can hold Ctrl-C (softspike/_console.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from softspike import encoding, neuron, surrogate
    from softspike.core.hookspecs import hookimpl
    from softspike.core.registry import Registry, get_registry, reload_registry
    from softspike.functional import detach, reset, set_step_mode
    from softspike.train.trained import load

    registry: Registry

# Imported on first use (PEP 562), not here: `import softspike` stays cheap, so the command line
# is inside its own KeyboardInterrupt handling before torch loads (seconds on a busy machine) and
# Ctrl-C in those seconds prints "interrupted" instead of a traceback.
_SUBMODULES = ("encoding", "neuron", "surrogate")
_NAMES = {
    "hookimpl": "softspike.core.hookspecs",
    "get_registry": "softspike.core.registry",
    "reload_registry": "softspike.core.registry",
    "detach": "softspike.functional",
    "reset": "softspike.functional",
    "set_step_mode": "softspike.functional",
    "load": "softspike.train.trained",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"softspike.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    # `softspike.registry` is the process-wide registry, discovered on first access, never at import.
    if name == "registry":
        return importlib.import_module("softspike.core.registry").get_registry()
    raise AttributeError(f"module 'softspike' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULES, *_NAMES, "registry"])


__all__ = [
    "detach", "encoding", "get_registry", "hookimpl", "load", "neuron", "reload_registry", "reset", "set_step_mode",
    "surrogate",
]
