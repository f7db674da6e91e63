"""One neuron assembly: the registry's `create` and the spec's neuron layer both go through
`softspike.core.neuron.assemble`, with the same option names and the same defaults."""

from __future__ import annotations

import torch

from softspike.core.neuron import DEFAULT_SURROGATE, NEURON_DEFAULTS, NEURON_OPTIONS
from softspike.core.registry import get_registry
from softspike.models.layers import NeuronLayer
from softspike.models.spec import language


def test_spec_neuron_layer_declares_the_neuron_options_and_defaults() -> None:
    fields = NeuronLayer.model_fields
    declared = [name for name in NEURON_OPTIONS if name in fields]
    # every option but the step mode (a spec network is multi-step) is a field of the layer
    assert set(NEURON_OPTIONS) - set(declared) == {"step_mode"}
    for name in declared:
        if name != "surrogate":  # a gate given by name or not at all: resolved by assemble
            assert fields[name].default == NEURON_DEFAULTS[name], name
    assert fields["surrogate"].default is None and NEURON_DEFAULTS["surrogate"] is None


def test_registry_create_and_spec_layer_build_the_same_neuron() -> None:
    registry = get_registry()
    by_name = registry.neurons.create("lif", step_mode="m")
    layer = language(registry).layers["neuron"].model_validate({"type": "neuron", "neuron": {"type": "lif"}})
    by_spec = layer.create(registry)
    assert type(by_name) is type(by_spec) and type(by_name.dynamics) is type(by_spec.dynamics)
    settings = ("v_threshold", "v_reset", "detach_reset", "step_mode", "backend")
    assert [getattr(by_name, k) for k in settings] == [getattr(by_spec, k) for k in settings]
    assert by_name.cfg.reset_grad == by_spec.cfg.reset_grad
    assert by_name.cfg.surrogate.kernel() == by_spec.cfg.surrogate.kernel()
    assert type(by_spec.cfg.surrogate) is type(registry.surrogates.create(DEFAULT_SURROGATE))
    x = torch.rand(4, 2, 5) * 3
    assert torch.equal(by_name(x), by_spec(x))
