"""Optional dependencies: imported when a feature needs them, with an error naming the extra to install.

softspike's core needs torch, numpy, pydantic, pluggy and tqdm only; what serves one job comes with an
extra (`pip install 'softspike[train]'`, `[data]`, `[plot]`, `[nir]`, or `[all]`), as pyproject.toml lists.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from softspike.core.errors import SoftspikeError


class MissingExtraError(SoftspikeError, ImportError):
    """A feature's optional dependency is not installed."""


def require(module: str, extra: str, purpose: str, distribution: str | None = None) -> ModuleType:
    """Import `module`, or raise MissingExtraError saying that `purpose` needs `pip install 'softspike[extra]'`."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        dist = distribution or module.split(".")[0]
        raise MissingExtraError(
            f"{purpose} needs the optional package {dist!r}, which is not installed or broken ({err}); "
            f"install it with: pip install 'softspike[{extra}]' (or pip install {dist})"
        ) from None


__all__ = ["MissingExtraError", "require"]
