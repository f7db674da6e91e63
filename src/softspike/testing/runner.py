"""Drive the conformance checks with hypothesis over one plugin, or over every registered one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softspike.core.neuron import Neuron
from softspike.core.registry import Registry, get_registry
from softspike.testing.checks import (
    check_dynamics_gradcheck,
    check_encoder_output,
    check_fused_matches_reference,
    check_multistep_matches_single,
    check_neuron_binary,
    check_surrogate_backward,
)
from softspike.testing.strategies import inputs, params_for, shapes
from softspike.testing.training import check_trains

KINDS = ("neuron", "surrogate", "encoder")


class ConformanceError(AssertionError):
    """A plugin fails a conformance property: which plugin, which property, and hypothesis's
    minimal counterexample (its "Falsifying example" with every drawn argument)."""

    def __init__(self, kind: str, name: str, prop: str, message: str, counterexample: str) -> None:
        self.kind, self.name, self.prop, self.message, self.counterexample = kind, name, prop, message, counterexample
        text = f"{kind} {name!r} fails the property {prop!r}: {message}"
        super().__init__(text + (f"\n{counterexample}" if counterexample else ""))


def _settings(max_examples: int) -> settings:
    # One failure, shrunk: several distinct ones would come back as an ExceptionGroup that names none.
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck),
                    report_multiple_bugs=False)


def _run(kind: str, name: str, prop: str, test: Callable[[], Any]) -> None:
    try:
        test()
    except ConformanceError:
        raise
    except Exception as err:
        notes = [n for n in getattr(err, "__notes__", []) if n.strip()]
        message = str(err).strip() or type(err).__name__
        if not isinstance(err, AssertionError):
            message = f"{type(err).__name__}: {message}"
        raise ConformanceError(kind, name, prop, message.splitlines()[0] if len(message) > 2000 else message,
                               "\n".join(notes)) from err


def reset_values(factory: Any, values: tuple[float | None, ...] = (0.0, None)) -> list[float | None]:
    """The v_reset values to try on a neuron: no soft reset (None) for a dynamics that forbids it."""
    soft_ok = getattr(factory, "soft_reset_ok", True)
    return [v for v in values if v is not None or soft_ok]


def check_plugin(kind: str, name: str, max_examples: int = 25, registry: Registry | None = None,
                 train: bool = True) -> None:
    """Run every property that applies to one registered plugin; `ConformanceError` (an
    AssertionError) names the first property that fails and its minimal counterexample.

    `train` adds the training property (`softspike.testing.training.check_trains`: a neuron with the
    sigmoid gate, a gate with the IF neuron, in mnist_fc's network at production size)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    reg = registry or get_registry()
    entry = {"neuron": reg.neurons, "surrogate": reg.surrogates, "encoder": reg.encoders}[kind].get(name)
    cfg = _settings(max_examples)

    if kind == "surrogate":

        @cfg
        @given(params_for(entry.params), shapes().flatmap(lambda sh: inputs(sh, -4.0, 4.0)))
        def backward_is_derivative(params: dict[str, Any], x: torch.Tensor) -> None:
            check_surrogate_backward(reg.surrogates.create(name, **params), x)

        @cfg
        @given(params_for(entry.params), st.sampled_from(reset_values(None, (0.0, None))), st.booleans(),
               st.tuples(st.integers(1, 6), shapes(1, 3, 4)).flatmap(lambda ts: inputs((ts[0], *ts[1]), -2.0, 4.0)))
        def fused_with_gate(params: dict[str, Any], v_reset: float | None, detach: bool, x_seq: torch.Tensor) -> None:
            # An IF neuron with this gate: the native kernel it declares (`kernel()`), else the
            # tensor-op path with its `derivative`, against the reference loop's spike op.
            gate = reg.surrogates.create(name, **params)
            check_fused_matches_reference(reg.neurons.create("if", surrogate=gate, v_reset=v_reset,
                                                             detach_reset=detach), x_seq)

        _run(kind, name, "spike backward is the gate's derivative", backward_is_derivative)
        _run(kind, name, "fused path with this gate equals the reference loop", fused_with_gate)
        if train:
            _run(kind, name, "trains mnist_fc's network", lambda: check_trains("if", name, reg))
        return

    if kind == "neuron":
        seq = st.tuples(st.integers(1, 6), shapes(1, 3, 4)).flatmap(lambda ts: inputs((ts[0], *ts[1]), -2.0, 4.0))
        resets = reset_values(entry.factory)
        neuron_args = (params_for(entry.params), st.sampled_from(reg.surrogates.names()), st.sampled_from(resets),
                       st.booleans(), seq)

        def neuron_property(check: Callable[[Neuron, torch.Tensor], Any]) -> Callable[[], None]:
            def prop(params: dict[str, Any], gate: str, v_reset: float | None, detach: bool,
                     x_seq: torch.Tensor) -> None:
                check(reg.neurons.create(name, **params, surrogate=gate, v_reset=v_reset, detach_reset=detach), x_seq)

            # hypothesis names the counterexample after the function: the check's own name
            prop.__name__ = prop.__qualname__ = check.__name__
            return cfg(given(*neuron_args)(prop))  # type: ignore[no-any-return]

        @cfg
        @given(params_for(entry.params), shapes(1, 2, 4).flatmap(
            lambda sh: st.tuples(inputs(sh, -2.0, 2.0), inputs(sh, -2.0, 2.0))))
        def charge_gradcheck(params: dict[str, Any], vx: tuple[torch.Tensor, torch.Tensor]) -> None:
            check_dynamics_gradcheck(reg.neurons.create_dynamics(name, **params), *vx)

        _run(kind, name, "spikes are binary in both step modes", neuron_property(check_neuron_binary))
        # The fused property first: a declaration its charge does not compute shows there as such,
        # and only as a consequence in multi-step (fused) against single-step (the charge).
        _run(kind, name, "fused path equals the reference loop", neuron_property(check_fused_matches_reference))
        _run(kind, name, "multi-step equals single-step calls", neuron_property(check_multistep_matches_single))
        _run(kind, name, "charge passes gradcheck", charge_gradcheck)
        if train:
            _run(kind, name, "trains mnist_fc's network", lambda: check_trains(name, "sigmoid", reg))
        return

    @cfg
    @given(params_for(entry.params), st.integers(1, 8), shapes(1, 3, 4).flatmap(lambda sh: inputs(sh, 0.0, 1.0)))
    def encoder_output(params: dict[str, Any], T: int, x: torch.Tensor) -> None:
        check_encoder_output(reg.encoders.create(name, **params), x, T)

    _run(kind, name, "encode(x, T) is a spike train of shape [T, *x.shape]", encoder_output)


def check_all(max_examples: int = 25, registry: Registry | None = None) -> list[tuple[str, str]]:
    """Check every registered plugin; returns the (kind, name) pairs checked."""
    reg = registry or get_registry()
    done = []
    for kind, catalog in reg.catalogs().items():
        for name in catalog.names():
            check_plugin(kind, name, max_examples, reg)
            done.append((kind, name))
    return done
