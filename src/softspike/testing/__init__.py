"""The conformance suite: properties every registered neuron, surrogate and encoder must have.

softspike's own tests run it over every registered plugin; a plugin author runs it on theirs:

    from softspike.testing import check_plugin
    check_plugin("neuron", "my_neuron")        # raises ConformanceError (an AssertionError) naming
                                               # the property and its minimal failing example

The checks are plain functions of concrete inputs (usable under any test runner); `check_plugin`
drives them with hypothesis-generated shapes, parameters and finite values.
"""

try:
    import hypothesis  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError(
        "softspike.testing needs hypothesis: pip install 'softspike[testing]' (or pip install hypothesis)"
    ) from err

from softspike.testing.checks import (
    check_dynamics_gradcheck,
    check_encoder_output,
    check_fused_matches_reference,
    check_multistep_matches_single,
    check_neuron_binary,
    check_surrogate_backward,
)
from softspike.testing.runner import ConformanceError, check_all, check_plugin, reset_values
from softspike.testing.strategies import inputs, params_for, shapes
from softspike.testing.training import check_trains, training_spec

__all__ = [
    "ConformanceError", "check_all", "check_dynamics_gradcheck", "check_encoder_output",
    "check_fused_matches_reference", "check_multistep_matches_single", "check_neuron_binary", "check_plugin",
    "check_surrogate_backward", "check_trains", "inputs", "params_for", "reset_values", "shapes", "training_spec",
]
