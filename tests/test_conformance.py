"""The conformance suite over every registered plugin (third-party ones included when installed)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import softspike
from softspike.testing import (
    check_dynamics_gradcheck,
    check_encoder_output,
    check_fused_matches_reference,
    check_multistep_matches_single,
    check_neuron_binary,
    check_plugin,
    check_surrogate_backward,
    inputs,
    params_for,
    reset_values,
    shapes,
)

REG = softspike.get_registry()
NEURONS = REG.neurons.names()
SURROGATES = REG.surrogates.names()
ENCODERS = REG.encoders.names()

sequences = st.tuples(st.integers(1, 6), shapes(1, 3, 4)).flatmap(lambda ts: inputs((ts[0], *ts[1]), -2.0, 4.0))


@pytest.mark.parametrize("gate", SURROGATES)
@pytest.mark.parametrize("name", NEURONS)
@given(data=st.data(), x_seq=sequences, detach=st.booleans(),
       reset_grad=st.sampled_from(["surrogate", "straight_through"]))
def test_spikes_are_binary_in_both_step_modes(name: str, gate: str, data: st.DataObject, x_seq: torch.Tensor,
                                               detach: bool, reset_grad: str) -> None:
    entry = REG.neurons.get(name)
    params = data.draw(params_for(entry.params))
    v_reset = data.draw(st.sampled_from(reset_values(entry.factory, (0.0, -0.5, None))))
    gate_params = data.draw(params_for(REG.surrogates.get(gate).params))
    neuron = REG.neurons.create(name, **params, surrogate=REG.surrogates.create(gate, **gate_params),
                                v_reset=v_reset, detach_reset=detach, reset_grad=reset_grad)
    check_neuron_binary(neuron, x_seq)


@pytest.mark.parametrize("name", NEURONS)
@given(data=st.data(), x_seq=sequences, detach=st.booleans(), gate=st.sampled_from(SURROGATES))
def test_multistep_equals_single_step_calls(name: str, data: st.DataObject, x_seq: torch.Tensor,
                                            detach: bool, gate: str) -> None:
    entry = REG.neurons.get(name)
    params = data.draw(params_for(entry.params))
    v_reset = data.draw(st.sampled_from(reset_values(entry.factory)))
    neuron = REG.neurons.create(name, **params, surrogate=gate, v_reset=v_reset, detach_reset=detach)
    check_multistep_matches_single(neuron, x_seq)
    check_fused_matches_reference(neuron, x_seq)


@pytest.mark.parametrize("gate", SURROGATES)
@given(data=st.data(), x=shapes().flatmap(lambda sh: inputs(sh, -4.0, 4.0)))
def test_spike_backward_is_the_surrogate_derivative(gate: str, data: st.DataObject, x: torch.Tensor) -> None:
    params = data.draw(params_for(REG.surrogates.get(gate).params))
    check_surrogate_backward(REG.surrogates.create(gate, **params), x)


@pytest.mark.parametrize("name", NEURONS)
@given(data=st.data(), vx=shapes(1, 2, 4).flatmap(lambda sh: st.tuples(inputs(sh, -2.0, 2.0), inputs(sh, -2.0, 2.0))))
def test_dynamics_pass_gradcheck(name: str, data: st.DataObject, vx: tuple[torch.Tensor, torch.Tensor]) -> None:
    params = data.draw(params_for(REG.neurons.get(name).params))
    check_dynamics_gradcheck(REG.neurons.create_dynamics(name, **params), *vx)


@pytest.mark.parametrize("name", ENCODERS)
@given(data=st.data(), T=st.integers(1, 8), x=shapes(1, 3, 4).flatmap(lambda sh: inputs(sh, 0.0, 1.0)))
def test_encoders_emit_spike_trains(name: str, data: st.DataObject, T: int, x: torch.Tensor) -> None:
    params = data.draw(params_for(REG.encoders.get(name).params))
    check_encoder_output(REG.encoders.create(name, **params), x, T)


def test_check_plugin_is_usable_by_plugin_authors() -> None:
    check_plugin("neuron", "lif", max_examples=3)
    check_plugin("surrogate", "atan", max_examples=3)
    check_plugin("encoder", "poisson", max_examples=3)
    with pytest.raises(LookupError, match="did you mean 'lif'"):
        check_plugin("neuron", "lfi")
