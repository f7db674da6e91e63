"""The strict base of every spec part, and the bounds that keep a valid spec buildable.

A spec that validates must also build and run: so sizes, nesting and magnitudes are bounded here,
where the language is defined, rather than discovered later as an overflow in torch's allocator or
a non-finite float32. The bounds are generous for any network that fits a machine; what they stop
is the accident (a typo of ten zeros) and the attack (a 5,000-digit integer).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from softspike.core.params import Params

#: Largest integer size a spec may give (features, channels, kernels, T, input dimensions): torch's
#: 32-bit index arithmetic in several kernels. Memory limits (models/limits.py) bind far earlier.
MAX_SIZE = 2**31 - 1

#: Largest magnitude of any float in a spec (thresholds, resets, plugin parameters): far beyond any
#: useful setting, and small enough that float32 arithmetic on it stays finite.
MAX_MAGNITUDE = 1e9

#: How deeply blocks (residual, or a plugin's layer that holds layers) may nest; every level adds
#: frames to torch's recursive module walks (state_dict, deepcopy, apply).
MAX_NESTING = 32

#: An integer size: at least 1, at most MAX_SIZE.
Size = Annotated[int, Field(ge=1, le=MAX_SIZE)]


def bounded_number(value: Any, info: ValidationInfo) -> Any:
    """Field validator for every field: a float must have magnitude <= MAX_MAGNITUDE, an integer
    magnitude <= MAX_SIZE (booleans and other values pass unchanged)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and abs(value) > MAX_MAGNITUDE:
        raise PydanticCustomError("number_too_large", "must be between -{bound} and {bound}", {"bound": "1e9"})
    if isinstance(value, int) and abs(value) > MAX_SIZE:
        raise PydanticCustomError("number_too_large", "must be between -{bound} and {bound}", {"bound": str(MAX_SIZE)})
    return value


#: The same check, ready to put in a model's namespace (spec.py adds it to every plugin's tagged model).
bounded_numbers = field_validator("*", mode="after")(bounded_number)


class SpecModel(Params):
    """Strict base of every part of a spec (the plugins' own base): unknown keys, NaN/inf and
    out-of-range numbers are errors."""

    check_numbers = bounded_numbers
