"""Reading pickled data files without running anything they name.

A pickle is a program: its GLOBAL opcodes import any callable and its REDUCE opcodes call it, so
`pickle.load` on a file someone else wrote runs their code. CIFAR-10's python version is a pickle
of plain containers and numpy arrays, so this unpickler admits exactly that and nothing more (the
"restricting globals" recipe of the `pickle` documentation, as `torch.load(weights_only=True)`
does for checkpoints):

- dicts, lists, tuples, str, bytes, numbers: built by opcodes, no global needed;
- `_codecs.encode(text, "latin1")`: how protocol 2 spells a bytes object;
- numpy arrays and scalars of plain dtypes (bool, integers, floats, fixed-size bytes/str), through
  numpy's own reconstructors, with every dtype checked before numpy sees it (an object array would
  hold further pickled values; those are refused).

Anything else is an `UnpicklingError` naming the refused global.
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Callable
from typing import IO, Any

import numpy as np

#: numpy dtype kinds a data file may hold: bool, signed/unsigned integers, floats, bytes, unicode.
PLAIN_KINDS = frozenset("biufSU")


def _plain_dtype(value: Any, *args: Any) -> np.dtype[Any]:
    dtype = np.dtype(value, *args)
    if dtype.hasobject or dtype.kind not in PLAIN_KINDS or dtype.fields is not None:
        raise pickle.UnpicklingError(f"refused numpy dtype {dtype!r}: only plain numeric or text arrays are read")
    return dtype


def _checked_dtype(value: Any) -> Any:
    if isinstance(value, np.dtype):
        _plain_dtype(value)
    return value


def _latin1(text: str, encoding: str = "utf-8") -> bytes:
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode(..., {encoding!r}): only latin1 bytes are read")
    return text.encode("latin1")


class _NdarrayName:
    """What the name `numpy.ndarray` resolves to: a marker for `_reconstruct`, not a callable, so a
    file cannot construct arrays of its own choosing through it."""


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _NdarrayName:
        raise pickle.UnpicklingError(f"refused array subtype {subtype!r}: only numpy.ndarray is read")
    return np.ndarray.__new__(np.ndarray, shape, _plain_dtype(dtype))


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    array = np.frombuffer(buf, dtype=_plain_dtype(dtype))
    return array.reshape(shape, order="F" if order == "F" else "C")


def _scalar(dtype: Any, *state: Any) -> Any:
    from numpy._core.multiarray import scalar  # type: ignore[attr-defined]

    return scalar(_plain_dtype(dtype), *(_checked_dtype(s) for s in state))


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("_codecs", "encode"): _latin1,
    ("numpy", "dtype"): _plain_dtype,
    ("numpy", "ndarray"): _NdarrayName,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_module, "_reconstruct")] = _reconstruct
    _ALLOWED[(_module, "scalar")] = _scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = _frombuffer


class DataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals plain-array data files need (see the module doc)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: a data file may hold only plain containers and numeric arrays"
            ) from None


def load_data_pickle(f: IO[bytes], encoding: str = "bytes") -> Any:
    """`pickle.load(f, encoding=encoding)` restricted to plain containers and numeric arrays."""
    return DataUnpickler(f, encoding=encoding).load()
