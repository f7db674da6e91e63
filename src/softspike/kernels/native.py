"""The compiled CPU kernels: built once with the system C++ compiler, loaded through ctypes.

The sources are small C++ files without torch headers (`kernels/csrc/`: one per op family), so they
build in seconds and need no ninja; they make one library. It is cached in torch's extension directory
under a name that hashes the sources, the flags, the compiler and the CPU, so a changed source or
machine rebuilds it.
Any failure (no compiler, a read-only cache, a broken build) leaves `load()` returning None with
the reason in `status()`; callers then use the tensor-op path.

Nothing outside `softspike.kernels` calls the library directly: the `torch.ops.softspike`
operators (`scan_native`, `spike_linear`, `spike_conv`, `sampling`, `bitpack`) wrap every entry point, check the
arguments and give PyTorch's compiler and transforms a node to see. This trades a C++
TORCH_LIBRARY registration (torch headers: about a minute of compiling per source change on two
cores) for a Python `custom_op` around the ctypes call (a few seconds), at the same per-call cost.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

log = logging.getLogger("softspike.kernels")

CSRC = Path(__file__).resolve().parent / "csrc"
#: The library's sources (each .cpp a translation unit, built into one library) and the headers they share.
SOURCES = tuple(sorted(CSRC.glob("*.cpp")))
HEADERS = tuple(sorted(CSRC.glob("*.h")))
# -ffp-contract=off: no fused multiply-add, so forward rounds exactly as PyTorch's separate ops;
# -fno-trapping-math lets the exp and the selects vectorize (results are unchanged); -fopenmp binds
# to the libgomp torch has loaded (same soname), so the kernels use torch's thread pool.
FLAGS = [
    "-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fPIC", "-shared", "-fopenmp", "-std=c++17",
]
ABI_VERSION = 3

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_status = "not built yet"
_path: str | None = None


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_tag() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    # torch's extension cache, found without importing torch.utils.cpp_extension (which warns
    # about CUDA on CPU-only machines).
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch_extensions"
    root = os.environ.get("SOFTSPIKE_BUILD_DIR") or os.environ.get("TORCH_EXTENSIONS_DIR") or str(cache)
    return Path(root) / "softspike_fused"


def _build(flags: list[str] = FLAGS) -> tuple[ctypes.CDLL, str]:
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    src = b"".join(f.read_bytes() for f in (*SOURCES, *HEADERS))
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(src + repr((flags, version, _cpu_tag())).encode()).hexdigest()[:16]
    out = _cache_dir() / f"kernels_{key}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        log.info("softspike: compiling the fused CPU kernels (%s)", out)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            tmp_out = Path(tmp) / out.name
            errors = []
            # Without OpenMP the kernels still build, single-threaded.
            for tried in (flags, [f for f in flags if f != "-fopenmp"]):
                proc = subprocess.run(
                    [cxx, *tried, "-o", str(tmp_out), *map(str, SOURCES)], capture_output=True, text=True, check=False
                )
                if proc.returncode == 0:
                    break
                errors.append(proc.stderr[-1500:])
            else:
                raise RuntimeError(f"{cxx} failed:\n" + "\n".join(errors))
            os.replace(tmp_out, out)  # atomic: concurrent builders never load a half-written file
    lib = ctypes.CDLL(str(out))
    if lib.ss_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{out} has ABI {lib.ss_abi_version()}, expected {ABI_VERSION}")
    i64, f32, i32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    lib.ss_linear_forward.argtypes = [ptr, ptr, i64, i64, i32, f32, f32, f32, f32, f32, i32, i32]
    lib.ss_linear_forward.restype = None
    lib.ss_linear_backward.argtypes = [
        ptr, ptr, ptr, ptr, i64, i64, i32, f32, f32, f32, f32, f32, i32, i32, i32, f32, f32, i32,
    ]
    lib.ss_linear_backward.restype = None
    lib.ss_poisson.argtypes = [ptr, ptr, i64, i64, ctypes.c_uint32, ctypes.c_uint32, i32]
    lib.ss_poisson.restype = None
    lib.ss_pack_bits.argtypes = [ptr, ptr, i64, i32]
    lib.ss_pack_bits.restype = i32
    lib.ss_unpack_bits.argtypes = [ptr, ptr, i64, i32]
    lib.ss_unpack_bits.restype = None
    lib.ss_spike_linear_forward.argtypes = [ptr, i64, i64, ptr, ptr, ptr, i64, ptr, i32]
    lib.ss_spike_linear_forward.restype = i32
    lib.ss_spike_linear_wgrad.argtypes = [ptr, i64, i64, ptr, i64, ptr, i32]
    lib.ss_spike_linear_wgrad.restype = None
    lib.ss_spike_conv_pack.argtypes = [ptr, ptr, ptr, i32]
    lib.ss_spike_conv_pack.restype = i64
    lib.ss_spike_conv_forward.argtypes = [ptr, ptr, ptr, ptr, ptr, i32]
    lib.ss_spike_conv_forward.restype = None
    lib.ss_spike_conv_wgrad.argtypes = [ptr, ptr, ptr, ptr, i32]
    lib.ss_spike_conv_wgrad.restype = None
    return lib, str(out)


def load() -> ctypes.CDLL | None:
    """The kernel library, building it on first use; None if it cannot be built or is disabled."""
    global _lib, _tried, _status, _path
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        if os.environ.get("SOFTSPIKE_NO_NATIVE", "") not in ("", "0"):
            _status = "disabled by SOFTSPIKE_NO_NATIVE"
        else:
            try:
                _lib, _path = _build()
                _status = "ok"
                log.info("softspike: fused CPU kernels loaded from %s", _path)
            except Exception as err:  # any build or load problem: fall back, say why
                _status = f"unavailable: {err}"
                log.warning("softspike: fused CPU kernels %s; using the tensor-op fused path", _status)
        _tried = True
    return _lib


# Builds of the same source for other CPUs than this one: `-march=native` picks the AVX-512 code
# where the machine has it, so CI also builds and tests the code paths other machines take.
VARIANTS: dict[str, list[str]] = {
    "no-avx512": [*FLAGS, "-mno-avx512f"],
    "x86-64": [f if f != "-march=native" else "-march=x86-64" for f in FLAGS],
}


def build_variant(name: str) -> ctypes.CDLL:
    """The kernels built for the CPU `name` of VARIANTS (x86-64 only), cached like the default build."""
    return _build(VARIANTS[name])[0]


@torch.compiler.assume_constant_result  # torch.compile calls it while tracing, not in the graph
def available() -> bool:
    """Whether the kernels are loaded (building them on first use)."""
    return load() is not None


def status() -> tuple[str, str | None]:
    """(status line, path of the loaded library)."""
    return _status, _path
