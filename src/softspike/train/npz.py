"""The one reader of `.npz` files (`train`/`evaluate` datasets, `predict` samples, the tonic frame cache).

Before any array's data is decompressed, the zip directory and each chosen member's `.npy` header
(shape and dtype, a few hundred bytes) are read and checked:

- the dtype is a plain number type torch can hold: bool, integers, float16/32/64 in either byte
  order (big-endian arrays are converted to native order); float128 (long double), complex,
  Python objects (a pickle), strings, dates and structured arrays are refused by name;
- the declared size, shape × item size, summed over the chosen arrays, is within the memory limit
  (`--max-memory`, default the machine's memory): a 2 MB file of compressed zeros can declare
  gigabytes, and numpy allocates the whole array before it reads a byte of it;
- the zip entry holds at least that many bytes (a header that claims more data than its member is
  a damaged file).

Pickles are never loaded (`allow_pickle=False`).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from softspike.core.errors import SoftspikeError

#: numpy dtype kinds torch can hold: bool, signed and unsigned integers, floats.
PLAIN_KINDS = "biuf"
_WHY = {
    "c": "complex numbers (the imaginary part would be dropped)",
    "O": "Python objects (a pickle, which is never loaded)",
    "U": "text", "S": "bytes", "V": "structured records", "M": "dates", "m": "time differences",
}


class DatasetError(SoftspikeError):
    """A dataset that is missing, unreadable, or does not fit the network."""


def _refuse_dtype(dtype: np.dtype[Any], key: str, where: str) -> None:
    if dtype.kind == "f" and dtype.itemsize > 8:
        raise DatasetError(f"{where}: {key} has dtype {dtype} (extended precision), which torch cannot hold; "
                           f"save it as float32 (x.astype(numpy.float32))")
    if dtype.kind not in PLAIN_KINDS:
        what = _WHY.get(dtype.kind, f"dtype {dtype}")
        raise DatasetError(f"{where}: {key} holds {what} (dtype {dtype.str}); save plain numeric arrays "
                           "(uint8 images, float32 samples, integer labels)")


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str,
            where: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """(shape, dtype, header length) of a member, reading only its first bytes."""
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # 3.0 exists only for structured dtypes with non-ASCII field names
            raise DatasetError(f"{where}: {key} is an .npy of format {version[0]}.{version[1]}, which holds "
                               "structured records; save plain numeric arrays")
        return tuple(shape), dtype, f.tell()


def read_npz(path: Path, where: str, choose: Callable[[list[str]], Sequence[str]],
             limit: int | None = None) -> dict[str, np.ndarray]:
    """The arrays `choose(names)` names in the `.npz` at `path`, each checked before it is
    decompressed (see the module docstring), in native byte order. `choose` may raise DatasetError
    (a missing array); any other failure is a DatasetError saying the file is not readable."""
    from softspike.models.limits import format_size, machine_memory

    limit = machine_memory() if limit is None else limit
    try:
        with zipfile.ZipFile(path) as zf:
            infos = {(i.filename[:-4] if i.filename.endswith(".npy") else i.filename): i for i in zf.infolist()}
            keys = list(choose(list(infos)))
            headers = {key: _header(zf, infos[key], key, where) for key in keys}
            total = 0
            for key, (shape, dtype, offset) in headers.items():
                _refuse_dtype(dtype, key, where)
                nbytes = math.prod(shape) * dtype.itemsize
                total += nbytes
                if total > limit:
                    before = f" (with the arrays before it, {format_size(total)})" if total > nbytes else ""
                    raise DatasetError(
                        f"{where}: {key} declares shape {list(shape)} of {dtype.name}, {format_size(nbytes)} once "
                        f"decompressed{before}, over the memory limit of {format_size(limit)} (the file is "
                        f"{format_size(path.stat().st_size)}); raise the limit with --max-memory SIZE if it is genuine")
                if infos[key].file_size < offset + nbytes:
                    raise DatasetError(f"{where}: {key} declares {format_size(nbytes)} of data but its zip entry holds "
                                       f"{format_size(infos[key].file_size)}: the file is damaged")
            out = {}
            for key in keys:
                with zf.open(infos[key]) as f:
                    arr = np.lib.format.read_array(f, allow_pickle=False)
                out[key] = arr.astype(arr.dtype.newbyteorder("="), copy=False)
            return out
    except DatasetError:
        raise
    except Exception as err:  # a truncated or non-zip file, a bad header, a member that does not decompress
        raise DatasetError(f"{where}: not a readable .npz file ({type(err).__name__}: {err})") from None


__all__ = ["PLAIN_KINDS", "DatasetError", "read_npz"]
