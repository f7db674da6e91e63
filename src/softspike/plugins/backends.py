"""softspike's own backends for the multi-step scan, registered through the plugin hook like a third party's.

    native      the C++ CPU kernels (`torch.ops.softspike.lif_multistep`, `softspike.kernels.scan_native`)
    torch       the scan in tensor ops with a hand-written BPTT, any device and dtype (`softspike.kernels.scan_torch`)
    compiled    torch.compile of one step for any dynamics (`softspike.kernels.scan_compiled`)
    reference   the per-step autograd loop every other backend is checked against
    triton      the Triton kernels on CUDA tensors (`softspike.kernels.triton`)
"""

from __future__ import annotations

from torch import Tensor

from softspike.core.backends import Backend
from softspike.core.dynamics import Dynamics
from softspike.core.step import FireConfig, multistep_reference
from softspike.kernels import native, scan_compiled, scan_native
from softspike.kernels.scan_torch import fused_torch, k_logit, plan_for
from softspike.kernels.triton.register import triton_backend

NO_DECLARATION = "the dynamics declares no linear charge (Dynamics.linear_charge)"


def _native_supports(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> str | None:
    return scan_native.supports(plan_for(dynamics, cfg), cfg, x)


def _native_available() -> str | None:
    return None if native.available() else native.status()[0]


def _native_run(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> Tensor:
    plan = plan_for(dynamics, cfg)
    assert plan is not None  # see _native_supports
    return scan_native.fused_native(plan, x, k_logit(plan, x))


def _torch_supports(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> str | None:
    return None if dynamics.linear_charge() is not None else NO_DECLARATION


def _torch_run(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> Tensor:
    plan = plan_for(dynamics, cfg)
    assert plan is not None  # see _torch_supports
    return fused_torch(plan, x)


def _any(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> str | None:
    return None


def _compiled_supports(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> str | None:
    return scan_compiled.traced_reason()


def _compiled_pays(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> str | None:
    if x[0].numel() < scan_compiled.MIN_NUMEL:
        return f"fewer than {scan_compiled.MIN_NUMEL} neurons per step: compiling would not pay"
    return None


def _compiled_available() -> str | None:
    ok, why = scan_compiled.status()
    return None if ok else why


def _compiled_run(dynamics: Dynamics, cfg: FireConfig, x: Tensor) -> Tensor:
    out = scan_compiled.compiled_multistep(dynamics, cfg, x)
    # A compiler that fails on first use has said why (logged, and `available` from now on).
    return out if out is not None else multistep_reference(dynamics, cfg, x)


def builtin_backends() -> list[Backend]:
    gates = ", ".join(scan_native.GATES)
    return [
        Backend("native", 300, _native_supports, _native_run,
                "CPU float32; dynamics declaring a LinearCharge without adaptation; gates declaring a kernel "
                f"({gates}); reset_grad 'surrogate' or detach_reset. Saves only X",
                available=_native_available),
        Backend("torch", 200, _torch_supports, _torch_run,
                "any device and dtype; dynamics declaring a LinearCharge (adaptive threshold included); any "
                "gate and reset mode. Saves H per step"),
        Backend("compiled", 100, _compiled_supports, _compiled_run,
                f"any dynamics, any device torch.compile targets: one step compiled (auto: layers of >= "
                f"{scan_compiled.MIN_NUMEL} neurons); off with {scan_compiled.DISABLE_ENV}=1",
                available=_compiled_available, pays_off=_compiled_pays),
        Backend("reference", 0, _any, multistep_reference,
                "everything: the per-step autograd loop every backend is checked against"),
        triton_backend(),
    ]
