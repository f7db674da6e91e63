"""The one hook a softspike plugin implements.

A plugin is a module named by an entry point in the group `softspike`::

    [project.entry-points.softspike]
    my_neurons = "my_package.softspike_plugin"

and that module defines::

    from softspike import hookimpl

    @hookimpl
    def softspike_register(registry):
        registry.neurons.add("my_neuron", MyDynamics)      # MyDynamics.Params: its pydantic schema
        registry.surrogates.add("my_gate", MyGate)
        registry.encoders.add("my_code", MyEncoder)
        registry.backends.add(Backend("my_kernel", 500, supports, run, "CUDA float32 LIF"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

PROJECT = "softspike"
ENTRY_POINT_GROUP = "softspike"
DISABLE_AUTOLOAD_ENV = "SOFTSPIKE_DISABLE_PLUGIN_AUTOLOAD"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

if TYPE_CHECKING:
    from softspike.core.registry import Registrar


class Hookspecs:
    """Hook specifications (pluggy checks every implementation against these signatures)."""

    @hookspec
    def softspike_register(self, registry: Registrar) -> None:
        """Add neurons, surrogates, encoders, layer types and backends: `registry.neurons.add(name, cls,
        params=None)`, `registry.backends.add(softspike.core.backends.Backend(...))`.

        Called once per plugin at discovery; never during a forward pass.
        """
