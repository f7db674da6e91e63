"""Bernoulli (Poisson-rate) spike sampling: `torch.ops.softspike.poisson`, one random stream everywhere.

Element i of step t spikes when u(t, i) < x[i], with u a counter-based hash of (t·M + i, seed):

    h = fmix32((lo + i) ^ s0);  h = fmix32(h ^ fmix32(hi ^ s1));  u = (h >> 8) · 2⁻²⁴
    (lo, hi) = the low and high 32 bits of t·M, fmix32 = murmur3's finalizer, i in memory order

so P(spike) = x on the 24-bit grid of torch.rand's float32, exactly 0 or 1 out. A call's seed is
one int64 drawn from torch's global CPU generator, so `torch.manual_seed` makes runs repeatable;
the two stream seeds come from it on its device (`stream_seeds`, tensor ops, the one place the mix
is written), with (lo, hi) its low and high 32 bits:

    s0 = fmix32(lo ^ fmix32(hi ^ 0x9E3779B9)),  s1 = fmix32(hi ^ fmix32(lo ^ 0x7F4A7C15))

and every path reads them from there: the compiled kernel (CPU float32, ~5x faster than
torch.rand), the Triton kernel and the same hash in tensor ops (no compiler, another device or
dtype) give the same stream.
"""

from __future__ import annotations

import torch
from torch import Tensor

from softspike.core.errors import KernelInputError
from softspike.kernels import native
from softspike.kernels.common import lib, memory_order, pooled_like, ptr

_M32 = 0xFFFFFFFF


def _mul32(h: Tensor, c: int) -> Tensor:
    # h·c mod 2³² in int64 without overflow: split c in 16-bit halves.
    return (h * (c & 0xFFFF) + (((h * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _fmix32(h: Tensor) -> Tensor:
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def stream_seeds(seed: Tensor) -> Tensor:
    """The stream seeds (s0, s1), an int64 tensor of 2 on seed's device, from a call's one-element seed."""
    lo, hi = seed & _M32, (seed >> 32) & _M32
    return torch.cat([_fmix32(lo ^ _fmix32(hi ^ 0x9E3779B9)), _fmix32(hi ^ _fmix32(lo ^ 0x7F4A7C15))])


def uniform_steps(T: int, M: int, seed: Tensor) -> Tensor:
    """u [T, M] in [0, 1) as float32, the kernel's stream, in tensor ops (on seed's device)."""
    s0, s1 = stream_seeds(seed)
    dev = seed.device
    base = torch.arange(T, dtype=torch.int64, device=dev) * M
    hi = _fmix32((base >> 32) ^ s1).unsqueeze(1)
    lo = (base & _M32).unsqueeze(1)
    h = _fmix32(((lo + torch.arange(M, dtype=torch.int64, device=dev)) & _M32) ^ s0)
    h = _fmix32(h ^ hi)
    return (h >> 8).to(torch.float32) * 5.9604644775390625e-8


def _check(x: Tensor, T: int, seed: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise KernelInputError("softspike::poisson: x must be a floating-point tensor of intensities in [0, 1]")
    if T < 1:
        raise KernelInputError(f"softspike::poisson: T must be >= 1, got {T}")
    if seed.dtype != torch.int64 or seed.shape != (1,):
        raise KernelInputError(
            f"softspike::poisson: seed must be an int64 tensor of 1, got {seed.dtype} {list(seed.shape)}"
        )


def _layout(x: Tensor) -> list[int]:
    """[T, *x.shape]'s memory order: T outermost, then x's own."""
    return [0, *(d + 1 for d in memory_order(x))]


@torch.library.custom_op("softspike::poisson", mutates_args=())
def poisson(x: Tensor, T: int, seed: Tensor) -> Tensor:
    """Spikes [T, *x.shape] (x's dtype and memory layout) with P(spike) = x, from the seed (one int64)."""
    _check(x, T, seed)
    if not (x.device.type == "cpu" and x.dtype == torch.float32 and native.available()):
        return poisson_tensor_ops(x, T, seed)
    perm = _layout(x)
    out = pooled_like((T, *x.shape), perm)
    M = x.numel()
    if M == 0:
        return out
    xp = x.permute(memory_order(x)).contiguous()  # a view unless x is not dense in memory
    s0, s1 = stream_seeds(seed).tolist()  # a CPU tensor: no device to wait for
    lib().ss_poisson(ptr(xp), ptr(out.permute(perm)), T, M, s0, s1, torch.get_num_threads())
    return out


def device_output(x: Tensor, T: int) -> tuple[Tensor, Tensor, Tensor]:
    """(spikes [T, *x.shape] to fill, in x's dtype and memory layout; the same as [T, M] in memory
    order; x's values in memory order, dense) for a device kernel or the tensor ops."""
    perm = _layout(x)
    out = torch.empty_permuted((T, *x.shape), perm, dtype=x.dtype, device=x.device)
    return out, out.permute(perm), x.permute(memory_order(x)).contiguous()


def poisson_tensor_ops(x: Tensor, T: int, seed: Tensor) -> Tensor:
    """`poisson`'s spikes in tensor ops (any device and dtype): what runs where no kernel does."""
    out, physical, xp = device_output(x, T)
    M = x.numel()
    if M == 0:
        return out
    u = uniform_steps(T, M, seed.to(x.device))
    ref = xp.reshape(1, M).to(torch.promote_types(x.dtype, torch.float32))
    physical.copy_((u < ref).view(physical.shape))
    return out


@poisson.register_fake
def _(x: Tensor, T: int, seed: Tensor) -> Tensor:
    _check(x, T, seed)
    return torch.empty_permuted((T, *x.shape), _layout(x), dtype=x.dtype, device=x.device)


def draw_seed(device: torch.device) -> Tensor:
    """The seed of a `poisson` call, one int64 drawn from torch's global CPU generator (so that a seed
    gives the same spikes on every device), as a tensor of 1 on `device`; the stream seeds come from it
    there (`stream_seeds`). For a GPU it goes through pinned memory without blocking: a plain
    host-to-device copy would synchronise at every call. It stays a tensor argument of the op: an
    int would make torch.compile recompile for every seed."""
    seed = torch.randint(0, 2**63 - 1, (1,), dtype=torch.int64)
    if device.type == "cpu":
        return seed
    if device.type != "cuda":
        return seed.to(device)
    host = torch.empty(1, dtype=torch.int64, pin_memory=True)
    return host.copy_(seed).to(device, non_blocking=True)


def bernoulli_steps(x: Tensor, T: int, backend: str = "auto") -> Tensor:
    """[T, *x.shape] spikes with P(spike) = x (no gradient), the same stream on every path: `backend`
    "auto" (the CPU kernel, the Triton one for CUDA tensors, else tensor ops) or one of "native",
    "triton", "torch" forced (softspike.kernels.devices)."""
    from softspike.kernels.devices import spike_op_kernel

    seed = draw_seed(x.device)
    if spike_op_kernel("poisson", (x,), backend) == "torch":
        return poisson_tensor_ops(x.detach(), T, seed)
    return poisson(x.detach(), T, seed)  # type: ignore[no-any-return]

