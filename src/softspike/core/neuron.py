"""Spiking neuron modules: a dynamics plus fire and reset (`softspike.core.step`), run one step at a
time or over a sequence by the backend the catalog picks (`softspike.core.backends`).

`assemble` is the one place a neuron is put together from registry plugins (the gate's default, the
option names): `registry.neurons.create` and the spec's neuron layer both call it.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any, Literal, Protocol

from torch import Tensor, nn

from softspike.core.backends import AUTO, BackendCatalog
from softspike.core.dynamics import Dynamics, State
from softspike.core.errors import ParameterError, StateError
from softspike.core.step import (
    FireConfig,
    ResetGrad,
    SpikeFn,
    fire_reset,
    multistep_reference,
    neuron_step,
    resting,
    step_parts,
)
from softspike.core.surrogate import Surrogate

__all__ = [
    "DEFAULT_SURROGATE", "NEURON_DEFAULTS", "NEURON_OPTIONS", "FireConfig", "Neuron", "ResetGrad", "SpikeFn",
    "StepMode", "assemble", "fire_reset", "multistep_reference", "neuron_step", "resting", "step_parts",
]

StepMode = Literal["s", "m"]
#: The gate of a neuron that names none.
DEFAULT_SURROGATE = "sigmoid"


def _check_float(x: object, where: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{where}: expected a floating-point tensor, got dtype {x.dtype}; convert it with x.float()"
        )
    return x


class Neuron(nn.Module):
    """A spiking neuron layer: drop it into `nn.Sequential` like an activation function.

    Single-step mode (`step_mode="s"`, the default) takes one time step per call and keeps the
    membrane in `.v` (and the dynamics' other variables in `.state`) between calls; call `.reset()`
    (or `softspike.reset(net)`) between samples. Multi-step mode (`step_mode="m"`) takes [T, B, ...]
    and returns spikes [T, B, ...], starting from rest at every call.

    Settings live once, in `cfg` (a validated `FireConfig`): assigning `neuron.surrogate = gate`
    swaps the gate every path uses from the next call on.
    """

    def __init__(
        self,
        dynamics: Dynamics,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate: Surrogate | str | None = None,
        detach_reset: bool = False,
        reset_grad: ResetGrad = "surrogate",
        step_mode: StepMode = "s",
        backend: str = AUTO,
    ) -> None:
        super().__init__()
        if not isinstance(dynamics, Dynamics):
            raise TypeError(f"dynamics must be a softspike Dynamics, got {type(dynamics).__name__}")
        if isinstance(surrogate, str) or surrogate is None:
            # Only for a neuron built by hand: `assemble` resolves names in its own registry.
            from softspike.core.registry import get_registry

            surrogate = get_registry().surrogates.create(surrogate or DEFAULT_SURROGATE)
        cfg = FireConfig(v_threshold, v_reset, surrogate, detach_reset, reset_grad)  # type: ignore[arg-type]
        if cfg.v_reset is None and not dynamics.soft_reset_ok:
            raise ParameterError(
                f"{type(dynamics).__name__} needs a hard reset: give v_reset a number (its membrane runs away "
                "under a soft reset)"
            )
        self.dynamics = dynamics
        self._cfg = cfg
        self.surrogate = cfg.surrogate
        self.step_mode = step_mode
        self.backend = backend
        #: The backend the last multi-step call ran (`softspike.core.backends`), and the
        #: (name, reason) of each backend `auto` passed over before it.
        self.backend_used: str | None = None
        self.backends_skipped: tuple[tuple[str, str], ...] = ()
        self.v: Tensor | float = cfg.v_rest
        self.state: State = {}

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "backend" and not isinstance(value, str):
            raise TypeError(f"backend must be 'auto' or a registered backend's name, got {type(value).__name__}")
        if name == "surrogate" and not isinstance(value, Surrogate):
            raise TypeError(
                f"surrogate must be a softspike Surrogate, got {type(value).__name__}; for a registered gate by "
                "name use softspike.get_registry().surrogates.create(name)"
            )
        super().__setattr__(name, value)
        if name == "surrogate" and "_cfg" in self.__dict__ and self._cfg.surrogate is not value:
            self.__dict__["_cfg"] = replace(self._cfg, surrogate=value)  # validates the new gate

    @property
    def cfg(self) -> FireConfig:
        """The neuron's settings; the one place every path reads them from."""
        return self._cfg

    # -- the 2020 attribute names -------------------------------------------------------------
    @property
    def v_threshold(self) -> float:
        return self._cfg.v_threshold

    @property
    def v_reset(self) -> float | None:
        return self._cfg.v_reset

    @property
    def detach_reset(self) -> bool:
        return self._cfg.detach_reset

    @property
    def step_mode(self) -> StepMode:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, mode: StepMode) -> None:
        if mode not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' (single step) or 'm' (multi-step), got {mode!r}")
        self._step_mode = mode

    def extra_repr(self) -> str:
        cfg = self._cfg
        reset = "soft" if cfg.v_reset is None else f"v_reset={cfg.v_reset}"
        extra = ", detach_reset=True" if cfg.detach_reset else ""
        if cfg.reset_grad != "surrogate":
            extra += f", reset_grad={cfg.reset_grad!r}"
        return f"v_threshold={cfg.v_threshold}, {reset}{extra}, step_mode={self.step_mode!r}"

    # -- state ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to rest: forget the membrane and every extra state variable."""
        self.v = self._cfg.v_rest
        self.state = {}

    def detach(self) -> None:
        """Keep the state's values but cut its history from the graph (truncated BPTT)."""
        if isinstance(self.v, Tensor):
            self.v = self.v.detach()
        self.state = {k: t.detach() for k, t in self.state.items()}

    # -- running ----------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self._step_mode == "s":
            return self.single_step(x)
        return self.multi_step(x)

    def single_step(self, x: Tensor) -> Tensor:
        """One time step; the membrane carries over to the next call until `reset()`."""
        _check_float(x, f"{type(self).__name__}.single_step")
        if isinstance(self.v, Tensor):
            v = self.v
            if v.shape != x.shape or v.device != x.device:
                raise StateError(
                    f"{type(self).__name__}: the kept membrane has shape {tuple(v.shape)} on {v.device}, "
                    f"but this input has shape {tuple(x.shape)} on {x.device}. Call reset() on the neuron "
                    "(or softspike.reset(net)) before feeding a new sample or batch."
                )
            if v.dtype != x.dtype:  # else type promotion would silently turn the kept state into x's dtype
                raise StateError(
                    f"{type(self).__name__}: the kept membrane is {v.dtype} but this input is {x.dtype}; feed "
                    f"every step in one dtype (x.to({v.dtype})), or call reset() to start over in {x.dtype}."
                )
            state = {**self.state, "v": v}
        else:
            state = resting(self.dynamics, self._cfg, x)
        s, state = neuron_step(self.dynamics, self._cfg, x, state)
        self.v = state.pop("v")
        self.state = state
        return s

    def multi_step(self, x_seq: Tensor) -> Tensor:
        """[T, B, ...] in, spikes [T, B, ...] out, from rest (no state kept between calls)."""
        _check_float(x_seq, f"{type(self).__name__}.multi_step")
        if x_seq.dim() < 2:
            raise ValueError(
                f"{type(self).__name__}: multi-step input must be [T, B, ...] (at least 2 dims), "
                f"got shape {tuple(x_seq.shape)}; for one step at a time use step_mode='s'"
            )
        if x_seq.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: multi-step input has T = 0 time steps")
        backends = self.__dict__.get("_backends")
        if backends is None:  # a neuron built by hand: the process-wide catalog, looked up once
            from softspike.core.registry import get_registry

            backends = self.__dict__["_backends"] = get_registry().backends
        chosen, self.backends_skipped = backends.select(self.dynamics, self._cfg, x_seq, self.backend)
        self.backend_used = chosen.name
        return chosen.run(self.dynamics, self._cfg, x_seq)

    def __getstate__(self) -> dict[str, Any]:
        # The catalog holds plugins' functions (not always picklable): a copy or an unpickled neuron
        # looks up the process-wide catalog again.
        state = dict(self.__dict__)
        state.pop("_backends", None)
        return state


#: The options every neuron takes beside its dynamics' own parameters (the names of `Neuron`'s arguments).
NEURON_OPTIONS: tuple[str, ...] = tuple(inspect.signature(Neuron.__init__).parameters)[2:]
#: Their defaults, as `Neuron` takes them (the spec's neuron layer declares the same ones from here).
NEURON_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(Neuron.__init__).parameters.items() if name in NEURON_OPTIONS
}


class Plugins(Protocol):
    """Where `assemble` finds gates and backends: a `Registry` (or its neuron catalog)."""

    @property
    def surrogates(self) -> Any: ...
    @property
    def backends(self) -> BackendCatalog: ...


def assemble(registry: Plugins, dynamics: Dynamics, **options: Any) -> Neuron:
    """A neuron module from plugins of `registry`: a gate given by name (or none: `DEFAULT_SURROGATE`)
    is created from its surrogates, a backend name is checked against its backends."""
    unknown = sorted(set(options) - set(NEURON_OPTIONS))
    if unknown:
        raise TypeError(f"unknown neuron option(s) {', '.join(unknown)}; the options are {', '.join(NEURON_OPTIONS)}")
    gate = options.get("surrogate")
    if gate is None or isinstance(gate, str):
        options["surrogate"] = registry.surrogates.create(gate or DEFAULT_SURROGATE)
    registry.backends.check_name(options.get("backend", AUTO))
    neuron = Neuron(dynamics, **options)
    neuron.__dict__["_backends"] = registry.backends  # its multi-step calls ask this registry's backends
    return neuron
