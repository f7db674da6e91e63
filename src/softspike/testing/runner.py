"""Drive the conformance checks with hypothesis over one plugin, or over every registered one."""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

KINDS = ("neuron", "surrogate", "encoder")


def _settings(max_examples: int) -> settings:
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))


def reset_values(factory: Any, values: tuple[float | None, ...] = (0.0, None)) -> list[float | None]:
    """The v_reset values to try on a neuron: no soft reset (None) for a dynamics that forbids it."""
    soft_ok = getattr(factory, "soft_reset_ok", True)
    return [v for v in values if v is not None or soft_ok]


def check_plugin(kind: str, name: str, max_examples: int = 25, registry: Registry | None = None) -> None:
    """Run every property that applies to one registered plugin; AssertionError on a failure."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    reg = registry or get_registry()
    entry = {"neuron": reg.neurons, "surrogate": reg.surrogates, "encoder": reg.encoders}[kind].get(name)
    cfg = _settings(max_examples)

    if kind == "surrogate":

        @cfg
        @given(params_for(entry.params), shapes().flatmap(lambda sh: inputs(sh, -4.0, 4.0)))
        def surrogate_props(params: dict[str, Any], x: torch.Tensor) -> None:
            check_surrogate_backward(reg.surrogates.create(name, **params), x)

        surrogate_props()
        return

    if kind == "neuron":
        seq = st.tuples(st.integers(1, 6), shapes(1, 3, 4)).flatmap(lambda ts: inputs((ts[0], *ts[1]), -2.0, 4.0))

        resets = reset_values(entry.factory)

        @cfg
        @given(params_for(entry.params), st.sampled_from(reg.surrogates.names()), st.sampled_from(resets),
               st.booleans(), seq)
        def neuron_props(params: dict[str, Any], gate: str, v_reset: float | None, detach: bool,
                         x_seq: torch.Tensor) -> None:
            neuron = reg.neurons.create(name, **params, surrogate=gate, v_reset=v_reset, detach_reset=detach)
            check_neuron_binary(neuron, x_seq)
            check_multistep_matches_single(neuron, x_seq)
            check_fused_matches_reference(neuron, x_seq)

        @cfg
        @given(params_for(entry.params), shapes(1, 2, 4).flatmap(
            lambda sh: st.tuples(inputs(sh, -2.0, 2.0), inputs(sh, -2.0, 2.0))))
        def charge_props(params: dict[str, Any], vx: tuple[torch.Tensor, torch.Tensor]) -> None:
            check_dynamics_gradcheck(reg.neurons.create_dynamics(name, **params), *vx)

        neuron_props()
        charge_props()
        return

    @cfg
    @given(params_for(entry.params), st.integers(1, 8), shapes(1, 3, 4).flatmap(lambda sh: inputs(sh, 0.0, 1.0)))
    def encoder_props(params: dict[str, Any], T: int, x: torch.Tensor) -> None:
        check_encoder_output(reg.encoders.create(name, **params), x, T)

    encoder_props()


def check_all(max_examples: int = 25, registry: Registry | None = None) -> list[tuple[str, str]]:
    """Check every registered plugin; returns the (kind, name) pairs checked."""
    reg = registry or get_registry()
    done = []
    for kind, catalog in reg.catalogs().items():
        for name in catalog.names():
            check_plugin(kind, name, max_examples, reg)
            done.append((kind, name))
    return done
