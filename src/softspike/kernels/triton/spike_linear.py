"""The spike-input linear layer on CUDA: Y = X·Wᵀ + b with X's rows kept as bits.

Y is either the sum of the weight columns of the inputs that fired (`_gather`, one program per row
and block of outputs, skipping the inputs that did not fire; a non-binary input adds x·w, so any
input gives X·Wᵀ + b) or a dense matmul (cuBLAS), chosen by
the density of X. The rule: gather when the density of the previous call with this weight (measured
on the device as the bits are packed, copied to the host without waiting, read one call later so
nothing ever synchronises) is at most `GATHER_MAX_DENSITY`; the first call, and every call before
a measurement has arrived, is dense. GATHER_MAX_DENSITY = 1/16 comes from a roofline model, not a
measurement (no GPU was at hand): a gather reads d·K rows of O floats per output row from L2
(~10 TB/s on an H100) where the matmul does 2·K·O flops at ~60 TFLOP/s in float32, so gather pays
only below d ≈ 1/12, less its index overhead; `make bench-gpu` measures the crossover.

The weight gradient comes from the bits (unpacked on the device, then a dense matmul) where X was
binary and from X itself otherwise, chosen on the device (`torch.where`), not on the host.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor, nn

from softspike.kernels.spike_linear import _check
from softspike.kernels.triton.bits import pack_rows, unpack_rows

GATHER_MAX_DENSITY = 1 / 16
BLOCK_O = 128

_density: dict[tuple[int, int, int], tuple[Tensor, torch.cuda.Event | None]] = {}
_known: dict[tuple[int, int, int], float] = {}


@triton.jit
def _gather(x_ptr, wt_ptr, b_ptr, out_ptr, K, n_out, HAS_BIAS: tl.constexpr, BLOCK_O: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    m = o < n_out
    acc = tl.zeros([BLOCK_O], tl.float32)
    if HAS_BIAS:
        acc += tl.load(b_ptr + o, mask=m, other=0.0).to(tl.float32)
    for i in range(K):
        xi = tl.load(x_ptr + r * K + i).to(tl.float32)
        if xi != 0.0:  # x·w for any input; for spikes, w itself
            acc += xi * tl.load(wt_ptr + i * n_out + o, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + r * n_out + o, acc.to(out_ptr.dtype.element_ty), mask=m)


def gather_linear(x2: Tensor, weight: Tensor, bias: Tensor | None, block_o: int = BLOCK_O) -> Tensor:
    """Y [R, O] = b + the sum over the inputs that fired of x·Wᵀ's row (for spikes: the row itself)."""
    R, K = x2.shape
    n_out = weight.shape[0]
    out = torch.empty((R, n_out), dtype=x2.dtype, device=x2.device)
    if R == 0:
        return out
    wt = weight.detach().t().contiguous()
    b = bias.detach().contiguous() if bias is not None else wt
    _gather[(R, triton.cdiv(n_out, block_o))](x2.contiguous(), wt, b, out, K, n_out, HAS_BIAS=bias is not None,
                                             BLOCK_O=block_o)
    return out


def _use_gather(key: tuple[int, int, int]) -> bool:
    pending = _density.get(key)
    if pending is not None and (pending[1] is None or pending[1].query()):
        _known[key] = float(pending[0])  # copied already: no wait
    return _known.get(key, 1.0) <= GATHER_MAX_DENSITY


def _record_density(key: tuple[int, int, int], x2: Tensor) -> None:
    if x2.device.type != "cuda" or x2.numel() == 0:
        return
    d = (x2 != 0).sum(dtype=torch.float32) / x2.numel()
    host = torch.empty((), dtype=torch.float32, pin_memory=True)
    host.copy_(d, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    _density[key] = (host, event)


def spike_linear_cuda(x: Tensor, weight: Tensor, bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """`torch.ops.softspike.spike_linear` on CUDA: (Y, X's rows as int64 words, whether X is binary)."""
    R, K, n_out = _check("spike_linear", x, weight, bias)
    x2 = x.reshape(R, K)
    words, binary = pack_rows(x2)
    key = (weight.data_ptr(), K, n_out)
    if R and K and _use_gather(key):
        y = gather_linear(x2, weight, bias)
    else:
        y = nn.functional.linear(x2, weight.detach(), bias)
    _record_density(key, x2)
    return y.reshape(*x.shape[:-1], n_out), words, binary


def spike_linear_wgrad_cuda(gy: Tensor, bits: Tensor, binary: Tensor, x: Tensor | None, n_in: int) -> Tensor:
    """`torch.ops.softspike.spike_linear_wgrad` on CUDA: dL/dW [O, K] = dL/dYᵀ·X."""
    xb = unpack_rows(bits, n_in, gy.dtype)
    if x is not None:
        xb = torch.where(binary, xb, x.to(gy.dtype))
    return gy.t() @ xb
