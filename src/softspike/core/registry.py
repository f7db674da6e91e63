"""The plugin registry: one catalog per kind (neurons, surrogates, encoders, layers, backends), filled through pluggy.

Discovery happens once, on first use of `get_registry()`: every entry point in the group `softspike`
is imported and its `softspike_register` hook is called with a registrar that records which
distribution added what. A plugin that fails to import, raises, or registers something invalid is
reported (`registry.errors`) and skipped as a whole; the others still load. Setting the environment
variable SOFTSPIKE_DISABLE_PLUGIN_AUTOLOAD=1 loads the built-ins only.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy
import torch
from pydantic import BaseModel
from torch import Tensor

from softspike.core.backends import AUTO, Backend, BackendCatalog
from softspike.core.errors import RegistryError, UnknownPluginError
from softspike.core.hookspecs import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, PROJECT, Hookspecs
from softspike.core.names import NAME_RE, RUNTIME
from softspike.core.neuron import NEURON_OPTIONS, assemble
from softspike.core.params import validate_params

T = TypeVar("T")
BUILTIN_MODULE = "softspike.plugins"


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plugin: its name, schema, factory and where it came from."""

    kind: str
    name: str
    factory: Callable[..., T]
    params: type[BaseModel]
    distribution: str
    doc: str = ""

    def validate(self, **params: Any) -> BaseModel:
        return validate_params(self.params, f"{self.kind[:-1]} '{self.name}'", params)

    def defaults(self) -> dict[str, Any]:
        out = {}
        for fname, f in self.params.model_fields.items():
            out[fname] = None if f.is_required() else f.get_default(call_default_factory=True)
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: kind, name, distribution, parameters with defaults."""
        params = {}
        for fname, f in self.params.model_fields.items():
            if fname == "type":  # a layer model's own discriminator, not a parameter
                continue
            params[fname] = {
                "default": None if f.is_required() else f.get_default(call_default_factory=True),
                "required": f.is_required(),
                "type": _type_name(f.annotation),
                "description": f.description or "",
            }
        return {
            "kind": self.kind[:-1],
            "name": self.name,
            "distribution": self.distribution,
            "doc": self.doc,
            "params": params,
        }


def _type_name(ann: Any) -> str:
    name = getattr(ann, "__name__", None)
    return name if name and not str(ann).startswith("typing") else str(ann).replace("typing.", "")


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


class Catalog(Generic[T]):
    """The entries of one kind: `add`, `names`, `get`, `create`, `schema`."""

    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, Entry[T]] = {}

    def add(
        self,
        name: str,
        factory: Callable[..., T],
        params: type[BaseModel] | None = None,
        *,
        doc: str | None = None,
        distribution: str = RUNTIME,
    ) -> Entry[T]:
        """Register `factory` under `name`; `params` defaults to `factory.Params`."""
        where = f"{self.kind[:-1]} '{name}' (from {distribution})"
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise RegistryError(f"{where}: names are lowercase snake_case (like 'my_neuron'), got {name!r}")
        if params is None:
            params = getattr(factory, "Params", None)
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise RegistryError(
                f"{where}: needs a pydantic params model: pass params=MyParams or give the class a "
                "nested `Params` model"
            )
        if not callable(factory):
            raise RegistryError(f"{where}: factory must be callable, got {type(factory).__name__}")
        if self.base is not None and isinstance(factory, type) and not issubclass(factory, self.base):
            base = f"{self.base.__module__}.{self.base.__name__}"
            raise RegistryError(f"{where}: {factory.__name__} must subclass {base}")
        if name in self._entries:
            other = self._entries[name].distribution
            raise RegistryError(f"{where}: the name is already registered by {other}")
        entry = Entry(self.kind, name, factory, params, distribution, doc if doc is not None else _first_line(factory))
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        self.get(name)
        del self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownPluginError(
                f"unknown {self.kind[:-1]} {name!r}{hint} (registered: {', '.join(self.names()) or 'none'})"
            ) from None

    def create(self, name: str, **params: Any) -> T:
        """Validate `params` against the entry's schema and build it."""
        entry = self.get(name)
        valid = entry.validate(**params)
        # Validated once: a factory that takes the params object gets it as is.
        from_params = getattr(entry.factory, "from_params", None)
        if callable(from_params):
            return from_params(valid)  # type: ignore[no-any-return]
        return entry.factory(**valid.model_dump())

    def schema(self, name: str) -> dict[str, Any]:
        """The JSON Schema of the entry's parameters."""
        return self.get(name).params.model_json_schema()


class NeuronCatalog(Catalog[Any]):
    """Neuron dynamics. `create` returns a ready neuron module; neuron options go beside the
    dynamics' own parameters: `create("lif", tau=2.0, v_threshold=1.0, surrogate="atan")`."""

    def __init__(self, kind: str, base: type | None, surrogates: Catalog[Any], backends: BackendCatalog) -> None:
        super().__init__(kind, base)
        # Gates and backends named in `create` come from the same registry.
        self.surrogates, self.backends = surrogates, backends

    def add(self, name: str, factory: Callable[..., Any], params: type[BaseModel] | None = None, *,
            doc: str | None = None, distribution: str = RUNTIME) -> Entry[Any]:
        """As `Catalog.add`, refusing a params model with a field named like a neuron option: `create`
        routes those names to the neuron, so such a field could never be set and every spec using
        the plugin would fail at build time instead of here."""
        entry = super().add(name, factory, params, doc=doc, distribution=distribution)
        names = {f.alias or n for n, f in entry.params.model_fields.items()} | set(entry.params.model_fields)
        clash = sorted(names.intersection(NEURON_OPTIONS))
        if clash:
            del self._entries[name]
            raise RegistryError(
                f"neuron {name!r} (from {distribution}): its params model has field(s) {', '.join(clash)}, which "
                f"are neuron options every neuron takes ({', '.join(NEURON_OPTIONS)}); rename them in the plugin"
            )
        return entry

    def create(self, name: str, **params: Any) -> Any:
        options = {k: params.pop(k) for k in list(params) if k in NEURON_OPTIONS}
        self.backends.check_name(options.get("backend", AUTO))  # before building the dynamics
        dynamics = super().create(name, **params)
        return assemble(self, dynamics, **options)

    def create_dynamics(self, name: str, **params: Any) -> Any:
        return super().create(name, **params)


class LayerCatalog(Catalog[Any]):
    """Layer types of the spec language. A layer type is its own params model: a pydantic class
    (subclass `softspike.models.LayerSpec`) with `out_shape(in_shape, context)` and
    `build(in_shape, context)`; `add("my_layer", MyLayer)` makes `{"type": "my_layer", ...}` a layer."""

    def add(
        self,
        name: str,
        factory: Callable[..., Any],
        params: type[BaseModel] | None = None,
        *,
        doc: str | None = None,
        distribution: str = RUNTIME,
    ) -> Entry[Any]:
        where = f"layer '{name}' (from {distribution})"
        if not (isinstance(factory, type) and issubclass(factory, BaseModel)):
            raise RegistryError(f"{where}: a layer type is a pydantic model class (subclass "
                                f"softspike.models.LayerSpec), got {factory!r}")
        if params is not None and params is not factory:
            raise RegistryError(f"{where}: a layer type is its own params model; leave params out")
        # Defined, and not the base class's abstract declaration.
        missing = [m for m in ("out_shape", "build") if not callable(method := getattr(factory, m, None))
                   or getattr(method, "__isabstractmethod__", False)]
        if missing:
            raise RegistryError(f"{where}: {factory.__name__} must define {' and '.join(missing)} "
                                "(see softspike.models.LayerSpec)")
        return super().add(name, factory, factory, doc=doc, distribution=distribution)


@dataclass
class PluginError:
    """A plugin that could not be loaded, and why."""

    distribution: str
    plugin: str
    error: str


@dataclass
class Registry:
    """All three catalogs and the errors met while loading plugins."""

    neurons: NeuronCatalog
    surrogates: Catalog[Any]
    encoders: Catalog[Any]
    errors: list[PluginError] = field(default_factory=list)
    plugin_manager: pluggy.PluginManager | None = None
    #: Layer types of the spec language (apart from `catalogs()`: they have no conformance suite).
    layers: LayerCatalog = field(default_factory=lambda: LayerCatalog("layers"))
    #: Who runs a neuron's multi-step scan (`softspike.core.backends`).
    backends: BackendCatalog = field(default_factory=BackendCatalog)

    @classmethod
    def empty(cls) -> Registry:
        from softspike.core.dynamics import Dynamics
        from softspike.core.encoder import Encoder
        from softspike.core.surrogate import Surrogate

        surrogates: Catalog[Any] = Catalog("surrogates", Surrogate)
        backends = BackendCatalog()
        return cls(NeuronCatalog("neurons", Dynamics, surrogates, backends), surrogates, Catalog("encoders", Encoder),
                   backends=backends)

    def catalogs(self) -> dict[str, Catalog[Any]]:
        return {"neuron": self.neurons, "surrogate": self.surrogates, "encoder": self.encoders}

    def describe(self) -> list[dict[str, Any]]:
        entries = [e.describe() for cat in [*self.catalogs().values(), self.layers] for e in cat]
        return entries + [b.describe() for b in self.backends]


class _ScopedCatalog:
    """What a plugin's hook sees: `add` stamps the plugin's distribution and keeps a journal."""

    def __init__(self, catalog: Catalog[Any], distribution: str, journal: list[tuple[Any, str]]):
        self._catalog, self._dist, self._journal = catalog, distribution, journal

    def add(self, name: str, factory: Callable[..., Any], params: type[BaseModel] | None = None, *,
            doc: str | None = None) -> Entry[Any]:
        entry = self._catalog.add(name, factory, params, doc=doc, distribution=self._dist)
        self._journal.append((self._catalog, name))
        return entry

    def names(self) -> list[str]:
        return self._catalog.names()


class _ScopedBackends:
    """What a plugin's hook sees of the backends: `add(Backend(...))`, stamped with its distribution."""

    def __init__(self, catalog: BackendCatalog, distribution: str, journal: list[tuple[Any, str]]):
        self._catalog, self._dist, self._journal = catalog, distribution, journal

    def add(self, backend: Backend) -> Backend:
        entry = self._catalog.add(backend, distribution=self._dist)
        self._journal.append((self._catalog, entry.name))
        return entry

    def names(self) -> list[str]:
        return self._catalog.names()


class Registrar:
    """The object passed to `softspike_register`: `registry.neurons.add(...)` and friends."""

    def __init__(self, registry: Registry, distribution: str) -> None:
        self.journal: list[tuple[Any, str]] = []
        self.neurons = _ScopedCatalog(registry.neurons, distribution, self.journal)
        self.surrogates = _ScopedCatalog(registry.surrogates, distribution, self.journal)
        self.encoders = _ScopedCatalog(registry.encoders, distribution, self.journal)
        self.layers = _ScopedCatalog(registry.layers, distribution, self.journal)
        self.backends = _ScopedBackends(registry.backends, distribution, self.journal)

    def rollback(self) -> None:
        for catalog, name in reversed(self.journal):
            catalog.remove(name)
        self.journal.clear()


def _entry_points() -> list[md.EntryPoint]:
    return sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.value != BUILTIN_MODULE, ep.name))


def _dist_name(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else f"<entry point {ep.name}>"


def _register_plugin(registry: Registry, pm: pluggy.PluginManager, module: Any, name: str, dist: str) -> None:
    """Register one plugin module and call its hook, all-or-nothing."""
    registrar = Registrar(registry, dist)
    try:
        pm.register(module, name=name)
        pm.check_pending()
        others = [p for p in pm.get_plugins() if p is not module]
        pm.subset_hook_caller("softspike_register", remove_plugins=others)(registry=registrar)
    except Exception as exc:
        registrar.rollback()
        if pm.is_registered(module):
            pm.unregister(module)
        registry.errors.append(PluginError(dist, name, f"{type(exc).__name__}: {exc}"))


def load_registry(autoload: bool | None = None) -> Registry:
    """A fresh registry: built-ins plus, unless autoload is off, every installed plugin."""
    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() not in ("1", "true", "yes")
    registry = Registry.empty()
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(Hookspecs)
    registry.plugin_manager = pm
    seen_builtin = False
    for ep in _entry_points():
        builtin = ep.value == BUILTIN_MODULE
        if not (builtin or autoload) or (builtin and seen_builtin):
            continue
        dist = _dist_name(ep)
        try:
            module = ep.load()
        except Exception as exc:
            registry.errors.append(
                PluginError(dist, ep.name, f"failed to import {ep.value!r}: {type(exc).__name__}: {exc}")
            )
            continue
        seen_builtin |= builtin
        _register_plugin(registry, pm, module, ep.name, dist)
    if not seen_builtin:  # running from a source tree that was never pip-installed
        try:
            builtins = importlib.import_module(BUILTIN_MODULE)
        except Exception as exc:
            registry.errors.append(PluginError("softspike", "builtins", f"failed to import {BUILTIN_MODULE!r}: "
                                               f"{type(exc).__name__}: {exc}"))
        else:
            _register_plugin(registry, pm, builtins, "builtins", "softspike")
    return registry


_lock = threading.Lock()
_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _registry
    if _registry is not None:  # no lock once loaded: neurons look here inside torch.compile'd code
        return _registry
    with _lock:
        if _registry is None:
            _registry = load_registry()
        return _registry


def reload_registry(autoload: bool | None = None) -> Registry:
    """Discard the registry and discover plugins again (after installing one, in tests)."""
    global _registry
    with _lock:
        _registry = load_registry(autoload)
        return _registry


def backend_info(layer: Any = None, x: Tensor | None = None, registry: Any = None) -> dict[str, Any]:
    """Every backend with its scope and whether this process can use it; given a neuron `layer` and an
    input `x` [T, B, ...], also why each backend does or does not apply to it and which one `auto` runs."""
    catalog: BackendCatalog = (registry or get_registry()).backends
    out: dict[str, Any] = {"backends": catalog.info(), "threads": torch.get_num_threads()}
    if layer is not None:
        if x is None:
            raise TypeError("backend_info(layer, x): give the input the layer would see, [T, B, ...]")
        out["layer"] = catalog.explain(layer.dynamics, layer.cfg, x)
    return out
