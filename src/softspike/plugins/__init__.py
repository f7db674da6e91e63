"""softspike's built-in plugins, registered through the same entry point a third party uses."""

from __future__ import annotations

from softspike.core.hookspecs import hookimpl
from softspike.core.registry import Registrar
from softspike.plugins import backends, encoders, neurons, surrogates


@hookimpl
def softspike_register(registry: Registrar) -> None:
    registry.neurons.add("if", neurons.IF)
    registry.neurons.add("lif", neurons.LIF)
    registry.neurons.add("parametric_lif", neurons.ParametricLIF)
    registry.neurons.add("alif", neurons.ALIF)
    registry.neurons.add("cuba_lif", neurons.CubaLIF)

    registry.surrogates.add("sigmoid", surrogates.Sigmoid)
    registry.surrogates.add("atan", surrogates.ATan)
    registry.surrogates.add("piecewise_quadratic", surrogates.PiecewiseQuadratic)
    registry.surrogates.add("fast_sigmoid", surrogates.FastSigmoid)
    registry.surrogates.add("erf", surrogates.Erf)
    registry.surrogates.add("triangle", surrogates.Triangle)
    registry.surrogates.add("straight_through", surrogates.StraightThrough)

    registry.encoders.add("poisson", encoders.PoissonEncoder)
    registry.encoders.add("constant", encoders.ConstantEncoder)
    registry.encoders.add("latency", encoders.LatencyEncoder)
    registry.encoders.add("delta", encoders.DeltaEncoder)
    registry.encoders.add("frames", encoders.FramesEncoder)

    for backend in backends.builtin_backends():
        registry.backends.add(backend)

    # Imported here, at registration: models imports core's kernels, which must not wait on plugins.
    from softspike.models.layers import BUILTIN_LAYERS

    for name, layer in BUILTIN_LAYERS.items():
        registry.layers.add(name, layer)
