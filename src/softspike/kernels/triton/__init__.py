"""GPU kernels written in Triton: CUDA implementations of the `torch.ops.softspike` operators.

The package imports triton only when asked (`unavailable()`, `register.install()`), so softspike
works, and says why this backend does not, on a CPU-only torch without triton. The kernels, a file
per op family: `scan` (the multi-step neuron scan, forward and BPTT), `spike_linear`, `bits`
(packing saved spikes) and `poisson` (the CPU kernel's counter-hash stream). `register` puts them
under the existing operators for the CUDA dispatch key and describes the "triton" backend.

With TRITON_INTERPRET=1 set before triton is first imported, every kernel here runs on CPU
tensors: that is how the test suite proves them without a GPU (tests/test_triton_interpret.py).
"""

from __future__ import annotations

import functools


@functools.cache
def unavailable() -> str | None:
    """None if triton imports here, else why not (the Triton backend's `available`)."""
    try:
        import triton
        import triton.language  # noqa: F401
    except Exception as err:  # ImportError on a CPU-only torch; anything else is reported as is
        return f"triton does not import ({type(err).__name__}: {err}); it ships with the CUDA builds of torch"
    return None
