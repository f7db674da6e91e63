"""The math: spike op, surrogate base, dynamics contract, time loop, encoders' base, registry."""

from softspike.core.dynamics import Dynamics, State
from softspike.core.encoder import Encoder
from softspike.core.errors import (
    ParameterError,
    RegistryError,
    SoftspikeError,
    StateError,
    UnknownPluginError,
)
from softspike.core.neuron import FireConfig, Neuron, fire_reset, multistep_reference, neuron_step
from softspike.core.params import Params
from softspike.core.registry import Registry, get_registry, reload_registry
from softspike.core.surrogate import Surrogate, spike

__all__ = [
    "Dynamics", "Encoder", "FireConfig", "Neuron", "ParameterError", "Params", "Registry", "RegistryError",
    "SoftspikeError", "State", "StateError", "Surrogate", "UnknownPluginError", "fire_reset", "get_registry",
    "multistep_reference", "neuron_step", "reload_registry", "spike",
]
