"""Networks as JSON specs: the spec language, the builder and the model zoo.

>>> from softspike.models import build, load_spec
>>> net = build(load_spec("mnist_fc"))

A new layer type is one `LayerSpec` subclass, registered like any plugin:
`registry.layers.add("my_layer", MyLayer)` (see docs/specs.md).
"""

from softspike.models.builder import build, count_parameters
from softspike.models.errors import SpecError
from softspike.models.layers import BuildContext, LayerSpec, ShapeContext, ShapeError
from softspike.models.load import CheckedSpec, check_spec, load_spec, zoo_names
from softspike.models.network import InputError, SpikingNetwork
from softspike.models.spec import json_schema, language

__all__ = [
    "BuildContext", "CheckedSpec", "InputError", "LayerSpec", "ShapeContext", "ShapeError", "SpecError",
    "SpikingNetwork", "build", "check_spec", "count_parameters", "json_schema", "language", "load_spec", "zoo_names",
]
