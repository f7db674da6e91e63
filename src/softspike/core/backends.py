"""The backend catalog: which code runs a neuron's multi-step scan.

A backend is a record: a name, a priority, `supports(dynamics, cfg, x) -> reason | None` (None: it
can run this layer), `run(dynamics, cfg, x) -> spikes` (the scan over [T, B, ...] from rest,
differentiable) and a one-line scope. Backends are registered through the plugin hook like
neurons (`registry.backends.add(Backend(...))`), the built-ins exactly as a third party, so a
package adds a GPU kernel without editing softspike. A neuron asks the catalog once per call:

    backend="auto"   the backend of highest priority whose `supports`, `pays_off` and `available`
                     all return None; every one passed over is listed with its reason
    backend="name"   that backend, or a `BackendError` with its reason (`pays_off` is not asked:
                     forcing a backend says it pays)

Every backend must give `softspike.core.step.multistep_reference`'s spikes (the conformance suite
checks it). This module imports no kernel: the catalog only holds what plugins put in it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from torch import Tensor

from softspike.core.dynamics import Dynamics
from softspike.core.errors import RegistryError, SoftspikeError, UnknownPluginError
from softspike.core.names import NAME_RE, RUNTIME
from softspike.core.step import FireConfig

AUTO = "auto"

Check = Callable[[Dynamics, FireConfig, Tensor], "str | None"]


class BackendError(SoftspikeError, RuntimeError):
    """A backend was asked for by name where it cannot run; the message says why."""


def _usable() -> str | None:
    return None


def _pays(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> str | None:
    return None


@dataclass(frozen=True)
class Backend:
    """One way to run the multi-step scan of a neuron (see the module docstring)."""

    #: Lowercase snake_case, e.g. "native", "torch", "compiled", "reference", "triton".
    name: str
    #: Higher is tried first by `backend="auto"`.
    priority: int
    #: None if this backend can run the layer (dynamics, settings, input), else the reason it cannot.
    supports: Check
    #: Spikes [T, B, ...] from rest for input [T, B, ...], differentiable like the reference loop.
    run: Callable[[Dynamics, FireConfig, Tensor], Tensor]
    #: One line for the docs and `softspike info`: what it runs, on which devices and dtypes.
    scope: str
    #: None if usable in this process, else why not (no compiler, no GPU, a library that failed to build).
    available: Callable[[], str | None] = _usable
    #: The distribution that registered it (filled by the registry).
    distribution: str = ""
    #: None if `auto` should pick it for this layer once it is supported, else why auto passes it over
    #: (e.g. a layer too small to pay a compile); a forced `backend="name"` ignores it.
    pays_off: Check = _pays

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (no call into the backend: `available` may build a library)."""
        return {"kind": "backend", "name": self.name, "distribution": self.distribution, "doc": self.scope,
                "priority": self.priority, "params": {}}


class Selection(NamedTuple):
    """The backend that runs, and (name, reason) for each backend tried before it."""

    backend: Backend
    skipped: tuple[tuple[str, str], ...]


class BackendCatalog:
    """The registered backends, in the order `auto` tries them (priority, highest first, then name)."""

    kind = "backends"

    def __init__(self) -> None:
        self._entries: dict[str, Backend] = {}
        self._ordered: tuple[Backend, ...] = ()

    def add(self, backend: Backend, *, distribution: str = RUNTIME) -> Backend:
        """Register `backend`; a taken name is an error naming both owners."""
        if not isinstance(backend, Backend):
            raise RegistryError(f"a backend (from {distribution}) is a softspike.core.backends.Backend record, "
                                f"got {type(backend).__name__}")
        name = backend.name
        where = f"backend {name!r} (from {distribution})"
        if not isinstance(name, str) or not NAME_RE.match(name) or name == AUTO:
            raise RegistryError(f"{where}: names are lowercase snake_case (like 'my_backend') and not 'auto'")
        if isinstance(backend.priority, bool) or not isinstance(backend.priority, int):
            raise RegistryError(f"{where}: priority must be an int, got {backend.priority!r}")
        for field in ("supports", "run", "available", "pays_off"):
            if not callable(getattr(backend, field)):
                raise RegistryError(f"{where}: {field} must be callable")
        if not isinstance(backend.scope, str) or not backend.scope.strip():
            raise RegistryError(f"{where}: give a one-line scope (what it runs, where)")
        if name in self._entries:
            raise RegistryError(f"{where}: the name is already registered by {self._entries[name].distribution}")
        entry = replace(backend, distribution=distribution)
        self._entries[name] = entry
        self._order()
        return entry

    def remove(self, name: str) -> None:
        self.get(name)
        del self._entries[name]
        self._order()

    def _order(self) -> None:
        self._ordered = tuple(sorted(self._entries.values(), key=lambda b: (-b.priority, b.name)))

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._ordered)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Backend:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(name), [AUTO, *self.names()], n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownPluginError(
                f"unknown backend {name!r}{hint} (registered: {', '.join([AUTO, *self.names()])})"
            ) from None

    def check_name(self, name: object) -> str:
        """`name` if it is 'auto' or a registered backend, else the `UnknownPluginError` of `get`."""
        if name != AUTO:
            self.get(name)  # type: ignore[arg-type]
        return name  # type: ignore[return-value]

    def select(self, dynamics: Dynamics, cfg: FireConfig, x: Tensor, backend: str = AUTO, *,
               everywhere: bool = False) -> Selection:
        """The backend that runs this layer (see the module docstring); `everywhere=True` asks what would
        run on a machine where every backend is available (for the docs' table)."""
        if backend != AUTO:
            chosen = self.get(backend)
            why = chosen.supports(dynamics, cfg, x) or (None if everywhere else chosen.available())
            if why is not None:
                raise BackendError(f"backend={backend!r} cannot run {type(dynamics).__name__} here: {why}")
            return Selection(chosen, ())
        skipped: list[tuple[str, str]] = []
        for b in self._ordered:
            # supports first: it is cheap, and `available` may build a library on first use.
            why = b.supports(dynamics, cfg, x) or b.pays_off(dynamics, cfg, x)
            why = why or (None if everywhere else b.available())
            if why is None:
                return Selection(b, tuple(skipped))
            skipped.append((b.name, why))
        if not skipped:
            raise BackendError("no backend is registered (the built-in plugins failed to load: see `softspike "
                               "plugins`), or add one with registry.backends.add(...)")
        lines = "; ".join(f"{n}: {w}" for n, w in skipped)
        raise BackendError(f"no backend can run {type(dynamics).__name__} here ({lines})")

    def explain(self, dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> list[dict[str, Any]]:
        """For every backend, in `auto`'s order: whether it can run this layer, why not, and which `auto` picks."""
        chosen = self.select(dynamics, cfg, x).backend.name
        rows = []
        for b in self._ordered:
            why = b.supports(dynamics, cfg, x) or b.available()
            if why is None and (slow := b.pays_off(dynamics, cfg, x)) is not None:
                why = f"applies when forced; auto passes it over: {slow}"
            rows.append({"name": b.name, "reason": why, "chosen": b.name == chosen})
        return rows

    def info(self) -> list[dict[str, Any]]:
        """Every backend with its scope and whether this process can use it."""
        return [{"name": b.name, "priority": b.priority, "scope": b.scope, "distribution": b.distribution,
                 "available": (why := b.available()) is None, "status": why or "available"}
                for b in self._ordered]

