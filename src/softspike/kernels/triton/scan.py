"""The multi-step scan of the linear neurons (IF, LIF, parametric LIF) as Triton kernels.

One program runs the whole time loop for a block of neurons, V in registers (float32 whatever the
input dtype), and writes only the spikes. Backward saves nothing but X: a first loop recomputes H
for every step into a float32 scratch [T, M] (dL/dX's own buffer when that is float32), then BPTT
runs in reverse over it. With z = H - V_th, S = Θ(z), σ' the gate's derivative:

    dL/dH = dL/dV·(1 - S) + dL/dz        hard reset;  (1 - σ(z)) straight-through
    dL/dH = dL/dV + dL/dz                soft reset
    dL/dz = (dL/dS + dL/dV·dV/dS)·σ'     dV/dS = V_reset - H (hard) | -V_th (soft), 0 detached
    H = V + (X - (V - V_rest))·k:  dL/dX = dL/dH·k,  dL/dV(t-1) = dL/dH - dL/dX,
                                   dL/dk += dL/dH·(X - (V(t-1) - V_rest))

The forward arithmetic is the reference loop's, operation for operation (fused multiply-adds off),
so the spikes equal it bit for bit on the same device: on CUDA, PyTorch divides a tensor by a Python
number as a multiplication by its float32 reciprocal, and so does the kernel there (`recip`); on
CPU tensors (the interpreter) it divides. In the straight-through mode V takes the hard reset's
value exactly (the reference computes soft + (hard - soft), equal up to one rounding).

The charge and gate numbers are the CPU kernels' (`DYNAMICS`, `GATES` of `softspike.kernels.scan_native`,
their one source), as constexpr globals the kernels compare with by name.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from softspike.kernels.common import memory_order
from softspike.kernels.scan_native import DYNAMICS, GATES, _check_lif, check_backward_args

IF, LIF, PLIF = (tl.constexpr(DYNAMICS[n]) for n in ("if", "lif", "plif"))
SIGMOID, ATAN, PIECEWISE_QUADRATIC, FAST_SIGMOID, ERF, TRIANGLE, STRAIGHT_THROUGH = (
    tl.constexpr(GATES[n])
    for n in ("sigmoid", "atan", "piecewise_quadratic", "fast_sigmoid", "erf", "triangle", "straight_through")
)

#: Neurons per program: a multiple of the warp, big enough to hide the load latency.
BLOCK = 512


@triton.jit
def _atan(x):
    # Cephes atanf (range reduction to |x| <= tan(pi/8), then a degree-9 odd polynomial): ~1e-7.
    a = tl.abs(x)
    big = a > 2.414213562373095
    mid = (a > 0.4142135623730950) & (a <= 2.414213562373095)
    r = tl.where(big, -1.0 / tl.where(big, a, 1.0), tl.where(mid, (a - 1.0) / (a + 1.0), a))
    y0 = tl.where(big, 1.5707963267948966, tl.where(mid, 0.7853981633974483, 0.0))
    z = r * r
    p = (((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z - 3.33329491539e-1) * z * r + r
    y = y0 + p
    return tl.where(x < 0, -y, y)


@triton.jit
def _gate_derivative(z, alpha, width, GATE: tl.constexpr):
    if GATE == SIGMOID:
        s = 1.0 / (1.0 + tl.exp(-alpha * z))
        d = alpha * s * (1.0 - s)
    elif GATE == ATAN:
        u = 1.5707963267948966 * alpha * z
        d = (alpha * 0.5) / (1.0 + u * u)
    elif GATE == PIECEWISE_QUADRATIC:
        d = tl.maximum(alpha - alpha * alpha * tl.abs(z), 0.0)
    elif GATE == FAST_SIGMOID:
        u = 1.0 + alpha * tl.abs(z)
        d = alpha / (2.0 * u * u)
    elif GATE == ERF:
        u = alpha * z
        d = alpha * 0.5641895835477563 * tl.exp(-(u * u))
    elif GATE == TRIANGLE:
        d = alpha * tl.maximum(1.0 - tl.abs(z) / width, 0.0)
    else:  # straight-through: alpha on |z| <= 0.5 / alpha
        d = tl.where(tl.abs(z) <= width, alpha, 0.0)
    return d


@triton.jit
def _gate_primitive(z, alpha, width, GATE: tl.constexpr):
    if GATE == SIGMOID:
        p = 1.0 / (1.0 + tl.exp(-alpha * z))
    elif GATE == ATAN:
        p = _atan(1.5707963267948966 * alpha * z) * 0.3183098861837907 + 0.5
    elif GATE == PIECEWISE_QUADRATIC:
        mid = -0.5 * alpha * alpha * z * tl.abs(z) + alpha * z + 0.5
        p = tl.where(z > 1.0 / alpha, 1.0, tl.where(z < -1.0 / alpha, 0.0, mid))
    elif GATE == FAST_SIGMOID:
        p = 0.5 + alpha * z / (2.0 * (1.0 + alpha * tl.abs(z)))
    elif GATE == ERF:
        p = 0.5 * (1.0 + tl.erf(alpha * z))
    elif GATE == TRIANGLE:
        mid = alpha * (z + width / 2 - z * tl.abs(z) / (2 * width))
        p = tl.where(z > width, alpha * width, tl.where(z < -width, 0.0, mid))
    else:
        p = tl.minimum(tl.maximum(alpha * z + 0.5, 0.0), 1.0)
    return p


@triton.jit
def _charge(v, x, k, tau, v_rest, DYN: tl.constexpr, RECIP: tl.constexpr):
    if DYN == IF:
        h = v + x
    elif DYN == LIF:
        if RECIP:
            h = v + (x - (v - v_rest)) * tau  # tau holds float32(1 / tau) here
        else:
            h = v + (x - (v - v_rest)) / tau
    else:
        h = v + (x - (v - v_rest)) * k
    return h


@triton.jit
def _scan_forward(x_ptr, s_ptr, h_ptr, k_ptr, T, M, tau, v_rest, v_th, v_reset,
                  DYN: tl.constexpr, HARD: tl.constexpr, RECIP: tl.constexpr, SAVE_H: tl.constexpr,
                  BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    k = tl.load(k_ptr).to(tl.float32) if DYN == PLIF else 0.0
    v = tl.zeros([BLOCK], tl.float32) + v_rest
    for t in range(T):
        idx = t * M + offs
        x = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        h = _charge(v, x, k, tau, v_rest, DYN, RECIP)
        z = h - v_th
        fired = z >= 0.0
        if SAVE_H:
            tl.store(h_ptr + idx, h, mask=mask)
        else:
            # through float32: bool -> bfloat16 directly trips the interpreter
            tl.store(s_ptr + idx, tl.where(fired, 1.0, 0.0).to(s_ptr.dtype.element_ty), mask=mask)
        if HARD:
            v = tl.where(fired, v_reset, h)
        else:
            v = tl.where(fired, z, h)


@triton.jit
def _scan_backward(x_ptr, gs_ptr, gx_ptr, h_ptr, k_ptr, gk_ptr, T, M, tau, v_rest, v_th, v_reset, alpha, width,
                   DYN: tl.constexpr, HARD: tl.constexpr, DETACH: tl.constexpr, STRAIGHT: tl.constexpr,
                   GATE: tl.constexpr, RECIP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    k = tl.load(k_ptr).to(tl.float32) if DYN == PLIF else 0.0
    # The factor dL/dX = dL/dH·kx: 1 (IF), 1/tau (LIF), k (parametric LIF).
    if DYN == IF:
        kx = 1.0
    elif DYN == LIF:
        kx = tau if RECIP else 1.0 / tau
    else:
        kx = k
    gv = tl.zeros([BLOCK], tl.float32)
    gk = tl.zeros([BLOCK], tl.float32)
    for i in range(T):
        t = T - 1 - i
        idx = t * M + offs
        h = tl.load(h_ptr + idx, mask=mask, other=0.0)
        z = h - v_th
        s = (z >= 0.0).to(tl.float32)
        sg = _gate_derivative(z, alpha, width, GATE)
        gs = tl.load(gs_ptr + idx, mask=mask, other=0.0).to(tl.float32)
        if HARD:
            if STRAIGHT:
                gh = gv * (1.0 - _gate_primitive(z, alpha, width, GATE))
            else:
                gh = gv * (1.0 - s)
            if not DETACH:
                gs = gs + gv * (v_reset - h)
        else:
            gh = gv
            if not DETACH:
                gs = gs - gv * v_th
        gh = gh + gs * sg
        gx = gh * kx
        if DYN == PLIF:
            xt = tl.load(x_ptr + idx, mask=mask, other=0.0).to(tl.float32)
            hp = tl.load(h_ptr + idx - M, mask=mask & (t > 0), other=0.0)
            fired_p = (hp - v_th) >= 0.0
            if HARD:
                vp = tl.where(fired_p, v_reset, hp)
            else:
                vp = tl.where(fired_p, hp - v_th, hp)
            vp = tl.where(t > 0, vp, v_rest)
            gk += tl.where(mask, gh * (xt - (vp - v_rest)), 0.0)
        if DYN == IF:
            gv = gh
        else:
            gv = gh - gx
        tl.store(gx_ptr + idx, gx.to(gx_ptr.dtype.element_ty), mask=mask)
    if DYN == PLIF:
        tl.store(gk_ptr + pid, tl.sum(gk, 0))


def _layout(x: Tensor) -> tuple[list[int], Tensor]:
    """(x's memory order, x in that order as a dense tensor: a view unless x's memory is not dense)."""
    perm = memory_order(x, lead=1)
    return perm, x.permute(perm).contiguous()


def _kernel_tau(tau: float, recip: bool) -> float:
    # PyTorch on CUDA: x / tau is x * float32(1 / float32(tau)).
    if not recip:
        return tau
    return float(torch.tensor(1.0, dtype=torch.float32) / torch.tensor(tau, dtype=torch.float32))


def _k_tensor(w: Tensor, dyn: int, device: torch.device) -> Tensor:
    """k = sigmoid(w) as a float32 tensor on the device (read by the kernel: no host read of w)."""
    if dyn == PLIF:
        return torch.sigmoid(w.detach().to(device=device, dtype=torch.float32)).reshape(1)
    return torch.zeros(1, dtype=torch.float32, device=device)


def scan_forward(x: Tensor, w: Tensor, dyn: int, tau: float, v_rest: float, v_threshold: float, v_reset: float,
                 hard: bool, block: int = BLOCK) -> Tensor:
    """Spikes [T, ...] in x's dtype and memory layout (see the module docstring)."""
    perm, xp = _layout(x)
    out = torch.empty_permuted(x.shape, perm, dtype=x.dtype, device=x.device)
    T = x.shape[0] if x.dim() else 0
    M = x.numel() // T if T else 0
    if x.numel() == 0:
        return out
    recip = x.device.type == "cuda"
    grid = (triton.cdiv(M, block),)
    _scan_forward[grid](
        xp, out.permute(perm), xp, _k_tensor(w, dyn, x.device), T, M, _kernel_tau(tau, recip), v_rest, v_threshold,
        v_reset, DYN=dyn, HARD=hard, RECIP=recip, SAVE_H=False, BLOCK=block, enable_fp_fusion=False,
    )
    return out


def scan_backward(grad: Tensor, x: Tensor, w: Tensor, dyn: int, tau: float, v_rest: float, v_threshold: float,
                  v_reset: float, hard: bool, detach: bool, gate: int, alpha: float, width: float,
                  straight: bool = False, block: int = BLOCK) -> tuple[Tensor, Tensor]:
    """(dL/dX [T, ...] in x's dtype and layout, dL/dk as a float64 scalar) for dL/dS = grad."""
    perm, xp = _layout(x)
    gx = torch.empty_permuted(x.shape, perm, dtype=x.dtype, device=x.device)
    T = x.shape[0] if x.dim() else 0
    M = x.numel() // T if T else 0
    if x.numel() == 0:
        return gx, torch.zeros((), dtype=torch.float64, device=x.device)
    recip = x.device.type == "cuda"
    gxp = gx.permute(perm)
    gs = grad.permute(perm).contiguous()
    # H for every step: dL/dX's own buffer when it is float32 (step t is read just before it is
    # overwritten, by the same program), else a float32 scratch.
    hs = gxp if x.dtype == torch.float32 else torch.empty(xp.shape, dtype=torch.float32, device=x.device)
    nprog = triton.cdiv(M, block)
    kt = _k_tensor(w, dyn, x.device)
    ktau = _kernel_tau(tau, recip)
    _scan_forward[(nprog,)](xp, hs, hs, kt, T, M, ktau, v_rest, v_threshold, v_reset, DYN=dyn, HARD=hard,
                            RECIP=recip, SAVE_H=True, BLOCK=block, enable_fp_fusion=False)
    parts = torch.empty(nprog if dyn == PLIF else 1, dtype=torch.float32, device=x.device)
    # The straight-through gate's window |z| <= 0.5/alpha travels in `width` (PyTorch compares in float32).
    wd = 0.5 / alpha if gate == STRAIGHT_THROUGH else width
    _scan_backward[(nprog,)](
        xp, gs, gxp, hs, kt, parts, T, M, ktau, v_rest, v_threshold, v_reset, alpha, wd, DYN=dyn, HARD=hard,
        DETACH=detach, STRAIGHT=straight and not detach, GATE=gate, RECIP=recip, BLOCK=block,
    )
    gk = parts.sum(dtype=torch.float64) if dyn == PLIF else torch.zeros((), dtype=torch.float64, device=x.device)
    return gx, gk



def lif_multistep_cuda(x: Tensor, w: Tensor, dyn: int, tau: float, v_rest: float, v_threshold: float,
                       v_reset: float, hard: bool, detach: bool, gate: int, alpha: float, width: float,
                       straight: bool = False) -> Tensor:
    """`torch.ops.softspike.lif_multistep` on CUDA."""
    _check_lif("lif_multistep", x, w, dyn, tau, {"v_rest": v_rest, "v_threshold": v_threshold, "v_reset": v_reset})
    return scan_forward(x, w, dyn, tau, v_rest, v_threshold, v_reset, hard)


def lif_multistep_backward_cuda(grad: Tensor, x: Tensor, w: Tensor, dyn: int, tau: float, v_rest: float,
                                v_threshold: float, v_reset: float, hard: bool, detach: bool, gate: int, alpha: float,
                                width: float, straight: bool = False) -> tuple[Tensor, Tensor]:
    """`torch.ops.softspike.lif_multistep_backward` on CUDA."""
    check_backward_args(grad, x, w, dyn, tau, v_rest, v_threshold, v_reset, gate, alpha, width)
    return scan_backward(grad, x, w, dyn, tau, v_rest, v_threshold, v_reset, hard, detach, gate, alpha, width,
                         straight)
