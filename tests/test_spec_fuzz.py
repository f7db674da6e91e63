"""Fuzzing the validator: nothing but SpecError ever escapes, whatever JSON value it is given."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from softspike.models import SpecError, check_spec
from softspike.models.load import parse_json, read_spec_text

KEYS = ["type", "name", "T", "layers", "encoder", "neuron", "surrogate", "tau", "alpha", "out_features",
        "kernel_size", "input_shape", "readout", "scale", "p", "v_reset", "x"]
TYPES = ["linear", "conv2d", "flatten", "neuron", "residual", "lif", "if", "poisson", "sigmoid", "rate", "dropout",
         "maxpool2d", "batchnorm2d", "avgpool2d", "alif", "constant"]

scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(TYPES) | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner,
                                                                max_size=5),
    max_leaves=25,
)
BASE: dict[str, Any] = json.loads(read_spec_text("mnist_fc")[0])


def _check(value: Any) -> None:
    try:
        check_spec(value, "<fuzz>")
    except SpecError as err:
        assert err.problems and all(isinstance(p, str) and ": " in p for p in err.problems)


@given(json_values)
def test_random_json_values_raise_only_spec_errors(value: Any) -> None:
    _check(value)


@given(st.data())
def test_mutated_zoo_spec_raises_only_spec_errors(data: st.DataObject) -> None:
    spec = copy.deepcopy(BASE)
    node: Any = spec
    for _ in range(data.draw(st.integers(0, 3))):  # walk down a random path, then replace what is there
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node)))
            if not isinstance(node[key], (dict, list)):
                break
            node = node[key]
        elif isinstance(node, list) and node:
            item = node[data.draw(st.integers(0, len(node) - 1))]
            if not isinstance(item, (dict, list)):
                break
            node = item
    if isinstance(node, dict):
        node[data.draw(st.sampled_from(sorted(node) + KEYS))] = data.draw(json_values)
    elif isinstance(node, list):
        node.append(data.draw(json_values))
    _check(spec)


@given(st.text(max_size=40))
def test_random_text_raises_only_spec_errors(text: str) -> None:
    try:
        _check(parse_json(text, "<fuzz>"))
    except SpecError:
        pass
