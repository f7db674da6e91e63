"""The Triton kernels under the `torch.ops.softspike` operators (CUDA key), and the "triton" backend.

`install()` registers, once, a CUDA implementation for each operator the CPU kernels define, so a
call on CUDA tensors runs the Triton kernel and torch.compile, export, FakeTensor and the pipelining
tracer still see the one operator (its fake and autograd registrations are shared with the CPU).

The backend record applies to CUDA tensors of float32, float16 or bfloat16 when triton imports:
dynamics that declare a linear charge without adaptation (IF, LIF, parametric LIF, or anyone's
equal), gates that declare a kernel, hard or soft reset, `detach_reset`, and both reset gradients.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from softspike.core.backends import Backend
from softspike.core.dynamics import Dynamics
from softspike.core.step import FireConfig
from softspike.kernels.triton import unavailable

#: Input dtypes the CUDA kernels take (state and arithmetic in float32).
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
NAME = "triton"
PRIORITY = 250  # above the tensor-op path (200): the first choice for CUDA tensors
SCOPE = ("CUDA float32/float16/bfloat16 (state in float32), when triton imports; dynamics declaring a "
         "LinearCharge without adaptation; gates declaring a kernel; hard/soft reset, detach_reset, "
         "reset_grad 'surrogate' or 'straight_through'")

_lock = threading.Lock()
_installed = False


def install() -> str | None:
    """Register the CUDA implementations (idempotent); None, or why they cannot be."""
    global _installed
    why = unavailable()
    if why is not None or _installed:
        return why
    with _lock:
        if _installed:
            return None
        from softspike.kernels import bitpack, common, sampling, scan_native, spike_linear
        from softspike.kernels.triton import bits, poisson, scan
        from softspike.kernels.triton import spike_linear as triton_linear

        common.OTHER_DEVICES["cuda"] = DTYPES
        scan_native.lif_multistep.register_kernel("cuda")(scan.lif_multistep_cuda)
        scan_native.lif_multistep_backward.register_kernel("cuda")(scan.lif_multistep_backward_cuda)
        spike_linear.spike_linear_forward.register_kernel("cuda")(triton_linear.spike_linear_cuda)
        spike_linear.spike_linear_wgrad.register_kernel("cuda")(triton_linear.spike_linear_wgrad_cuda)
        bitpack.pack_bits.register_kernel("cuda")(bits.pack_bits_cuda)
        bitpack.unpack_bits.register_kernel("cuda")(bits.unpack_bits_cuda)
        sampling.poisson.register_kernel("cuda")(poisson.poisson_cuda)
        _installed = True
    return None


def supports(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> str | None:
    """None if the Triton scan runs this layer, else why not."""
    from softspike.kernels.scan_native import declared_reason
    from softspike.kernels.scan_torch import plan_for

    if x.device.type != "cuda":
        return f"the Triton kernels take CUDA tensors, this input is on {x.device}"
    why = unavailable()
    if why is not None:
        return why
    if x.dtype not in DTYPES:
        return f"the Triton kernels take float32, float16 or bfloat16, got {x.dtype}"
    return declared_reason(plan_for(dynamics, cfg), cfg)


def run(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> Tensor:
    """Spikes [T, B, ...] from rest through `torch.ops.softspike.lif_multistep` on CUDA (differentiable)."""
    from softspike.kernels.scan_native import LifMultistep, kernel_args
    from softspike.kernels.scan_torch import k_logit, plan_for

    why = install()
    if why is not None:
        raise RuntimeError(f"backend='triton' cannot run here: {why}")
    plan = plan_for(dynamics, cfg)
    assert plan is not None  # see `supports`
    straight = cfg.reset_grad == "straight_through" and not cfg.detach_reset
    out: Tensor = LifMultistep.apply(x, k_logit(plan, x), *kernel_args(plan, cfg), straight)
    return out


def triton_backend() -> Backend:
    """The "triton" backend record, registered with the built-ins through the plugin hook."""
    return Backend(NAME, PRIORITY, supports, run, SCOPE, available=unavailable)
