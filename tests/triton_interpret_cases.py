"""The Triton kernels against the reference, on CPU tensors through triton's interpreter.

Run as a script by tests/test_triton_interpret.py in a child process whose environment has
TRITON_INTERPRET=1 (it must be set before triton is first imported, so it cannot be set inside the
test process without changing every other test that imports triton). Prints one JSON object:
{family: [[case, error or null], ...]}. The cases come from the registry: every registered dynamics
that declares a linear charge without adaptation and every gate that declares a kernel, over the
reset modes, the input dtypes and ragged shapes (T = 1, sizes not a multiple of the block, empty).

Tolerances (gradients against the reference loop run in float32 on the same inputs): float32
inputs rtol 1e-5 (atol 1e-5 of the largest entry); float16 rtol 2e-3, bfloat16 rtol 1.6e-2 (the
kernels keep state and BPTT in float32 and round once on output: half an ulp of the output dtype,
plus float32 rounding). Spikes are compared for equality.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator

import torch

torch.set_num_threads(1)
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
RESETS = [  # (v_reset, detach_reset, reset_grad)
    (0.0, False, "surrogate"), (None, False, "surrogate"), (0.0, True, "surrogate"), (None, True, "surrogate"),
    (-0.1, False, "straight_through"), (None, False, "straight_through"),
]
SMALL_BLOCK = 64  # so that a few dozen neurons already span a ragged last block

Case = tuple[str, Callable[[], None]]


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float, what: str) -> None:
    got, want = got.double(), want.double()
    scale = float(want.abs().max()) if want.numel() else 0.0
    err = (got - want).abs() - rtol * want.abs()
    worst = float(err.max()) if err.numel() else 0.0
    if worst > rtol * max(scale, 1e-3):
        raise AssertionError(f"{what}: off by {worst:.3g} beyond rtol {rtol} (largest |value| {scale:.3g})")


def _neurons() -> list[tuple[str, torch.nn.Module]]:
    from softspike import get_registry
    from softspike.core.dynamics import Dynamics

    reg = get_registry()
    out = []
    for name in reg.neurons.names():
        dyn = reg.neurons.create_dynamics(name)
        decl = dyn.linear_charge() if isinstance(dyn, Dynamics) else None
        if decl is not None and decl.adaptation is None:
            out.append((name, dyn))
    return out


def _gates() -> list[tuple[str, object]]:
    from softspike import get_registry
    from softspike.kernels.scan_native import GATES

    reg = get_registry()
    out = []
    for name in reg.surrogates.names():
        gate = reg.surrogates.create(name)
        decl = gate.kernel()
        if decl is not None and decl.name in GATES:
            out.append((name, gate))
    return out


def _scan_case(dyn: torch.nn.Module, gate: object, reset: tuple, dtype: torch.dtype, T: int, M: int,
               block: int, through_op: bool = False) -> None:
    from softspike.core.step import FireConfig, multistep_reference
    from softspike.kernels.scan_native import kernel_args
    from softspike.kernels.scan_torch import k_logit, plan_for
    from softspike.kernels.triton import register, scan

    v_reset, detach, reset_grad = reset
    cfg = FireConfig(1.0, v_reset, gate, detach, reset_grad)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(T * 1000 + M)
    x = (torch.randn(T, M, generator=g) * 0.8 + 0.45).to(dtype)
    gy = torch.randn(T, M, generator=g).to(dtype)
    x32 = x.float().requires_grad_(True)
    params = [p for p in dyn.parameters() if p.requires_grad]
    ref = multistep_reference(dyn, cfg, x32)
    want = torch.autograd.grad(ref, [x32, *params], gy.float(), allow_unused=True) if ref.numel() else None
    plan = plan_for(dyn, cfg)
    assert plan is not None
    if through_op:  # the backend's own path: the operator, its autograd registration, the straight flag
        xin = x.clone().requires_grad_(True)
        spikes = register.run(dyn, cfg, xin)
        got = torch.autograd.grad(spikes, [xin, *params], gy, allow_unused=True) if spikes.numel() else None
        gx = got[0] if got else None
        gw = got[1] if got and params else None
    else:
        args = kernel_args(plan, cfg)
        w = k_logit(plan, x)
        spikes = scan.scan_forward(x, w, *args[:6], block=block)
        straight = reset_grad == "straight_through" and not detach
        gx, gk = scan.scan_backward(gy, x, w, *args, straight=straight, block=block)
        gw = None
        if params:
            k = torch.sigmoid(w.detach())
            gw = (gk * k.double() * (1 - k.double())).reshape(w.shape)
    if spikes.dtype != dtype or spikes.shape != x.shape:
        raise AssertionError(f"spikes are {spikes.dtype} {list(spikes.shape)}, expected {dtype} {list(x.shape)}")
    if not torch.equal(spikes.float(), ref.detach()):
        raise AssertionError(f"spikes differ at {int((spikes.float() != ref).sum())} of {ref.numel()} places")
    if want is None:
        return
    assert gx is not None
    if gx.dtype != dtype:
        raise AssertionError(f"dL/dX is {gx.dtype}, expected {dtype}")
    _close(gx, want[0], TOL[dtype], "dL/dX")
    if params:
        assert gw is not None and want[1] is not None
        _close(gw, want[1], max(TOL[dtype], 1e-5) * 10, "dL/dw (k = sigmoid(w))")


def scan_cases() -> Iterator[Case]:
    neurons, gates = _neurons(), _gates()
    sig = dict(gates).get("sigmoid", gates[0][1])
    # Every gate under every reset mode (float32, ragged), the dynamics taking turns.
    for i, (gname, gate) in enumerate(gates):
        for j, reset in enumerate(RESETS):
            nname, dyn = neurons[(i + j) % len(neurons)]
            yield f"{nname}/{gname}/{reset}/float32", lambda d=dyn, g=gate, r=reset: _scan_case(
                d, g, r, torch.float32, 5, 70, SMALL_BLOCK)
    # Every dynamics in every dtype under every reset mode (sigmoid gate).
    for nname, dyn in neurons:
        for dtype in (torch.float16, torch.bfloat16):
            for reset in RESETS:
                yield f"{nname}/sigmoid/{reset}/{dtype}", lambda d=dyn, r=reset, dt=dtype: _scan_case(
                    d, sig, r, dt, 4, 37, SMALL_BLOCK)
    # Ragged shapes: T = 1, fewer neurons than a block, exactly a block, empty.
    for nname, dyn in neurons:
        for T, M in ((1, 5), (3, 64), (6, 129), (3, 0)):
            yield f"{nname}/shape T={T} M={M}", lambda d=dyn, t=T, m=M: _scan_case(
                d, sig, RESETS[0], torch.float32, t, m, SMALL_BLOCK)
    # Through the backend's run (the operator with its autograd), the CPU key pointed at the kernels.
    for nname, dyn in neurons:
        for reset in (RESETS[0], RESETS[5]):
            yield f"{nname}/op path/{reset}", lambda d=dyn, r=reset: _scan_case(
                d, sig, r, torch.float32, 4, 600, SMALL_BLOCK, through_op=True)


def _spikes(shape: tuple[int, ...], seed: int, p: float = 0.2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).to(dtype)


def _bits_case(n: int, dtype: torch.dtype, binary: bool) -> None:
    from softspike.kernels import bitpack
    from softspike.kernels.triton import bits

    x = _spikes((n,), n, dtype=dtype)
    if not binary and n:
        x[n // 2] = 0.5
    got, ok = bits.pack_bits_cuda(x, block=16)
    want, want_ok = bitpack.pack_bits(x.float())  # the CPU kernel
    if bool(ok) != bool(want_ok):
        raise AssertionError(f"binary flag {bool(ok)}, CPU kernel says {bool(want_ok)}")
    if binary:
        if not torch.equal(got, want):
            raise AssertionError("packed bytes differ from the CPU kernel's")
        back = bits.unpack_bits_cuda(got, [n], block=16)
        if not torch.equal(back, bitpack.unpack_bits(want, [n])):
            raise AssertionError("unpacked values differ from the CPU kernel's")


def _rows_case(R: int, K: int, n_out: int, bias: bool, p: float) -> None:
    from softspike.kernels import spike_linear as cpu_linear
    from softspike.kernels.triton import spike_linear

    x = _spikes((R, K), R * K + n_out, p)
    g = torch.Generator().manual_seed(n_out)
    w = torch.randn(n_out, K, generator=g)
    b = torch.randn(n_out, generator=g) if bias else None
    want_y, want_bits, want_ok = cpu_linear.spike_linear_forward(x, w, b)  # the CPU kernels
    words, ok = spike_linear.pack_rows(x)
    if not torch.equal(words, want_bits) or bool(ok) != bool(want_ok):
        raise AssertionError("row words differ from the CPU kernel's")
    y = spike_linear.gather_linear(x, w, b, block_o=32)
    _close(y, x @ w.t() + (b if b is not None else 0), 1e-5, "Y (gather)")
    _close(y, want_y, 1e-5, "Y against the CPU kernel")
    gy = torch.randn(R, n_out, generator=g)
    gw = spike_linear.spike_linear_wgrad_cuda(gy, words, ok, None, K)
    _close(gw, cpu_linear.spike_linear_wgrad(gy, want_bits, want_ok, None, K), 1e-5, "dL/dW")
    xn = x.clone()
    if R and K:
        xn[0, 0] = 0.5  # not binary: the dense gradient from x, chosen on the device
    words_n, ok_n = spike_linear.pack_rows(xn)
    _close(spike_linear.gather_linear(xn, w, b, block_o=32), xn @ w.t() + (b if b is not None else 0), 1e-5,
           "Y (gather, non-binary input)")
    _close(spike_linear.spike_linear_wgrad_cuda(gy, words_n, ok_n, xn, K), gy.t() @ xn, 1e-5, "dL/dW (non-binary)")
    # On CUDA the layer keeps X with the bits (the flag stays on the device): binary X, X given.
    _close(spike_linear.spike_linear_wgrad_cuda(gy, words, ok, x, K), gy.t() @ x, 1e-5, "dL/dW (binary, X kept)")


def _late_case(n: int, binary: bool) -> None:
    """compact_saved_spikes' CUDA record over the Triton packing: the bits it keeps unpack to the tensor."""
    from softspike.kernels.triton import bits
    from softspike.kernels.triton.late import LatePacked

    class Landed:
        def value(self) -> bool:
            return bool(ok)

    x = _spikes((n,), n + 1)
    if not binary:
        x[0] = 0.5
    packed, ok = bits.pack_bits_cuda(x, block=16)
    rec = LatePacked(x, packed, ok, flag=Landed())  # type: ignore[arg-type]
    back = rec.unpack()
    if (rec.dense is None) != binary or not torch.equal(back, x):
        kept = "bits" if rec.dense is None else "the tensor"
        raise AssertionError(f"kept {kept}; unpacked equal: {torch.equal(back, x)}")


def _poisson_case(shape: tuple[int, ...], T: int, dtype: torch.dtype, seed: int) -> None:
    from softspike.kernels import sampling
    from softspike.kernels.triton import poisson

    g = torch.Generator().manual_seed(sum(shape) + T)
    x = torch.rand(shape, generator=g).to(dtype)
    s = torch.tensor([seed], dtype=torch.int64)
    got = poisson.poisson_cuda(x, T, s, block=32)
    want = sampling.poisson(x.float(), T, s)  # the CPU kernel (float32)
    if got.dtype != dtype or not torch.equal(got.float(), want):
        raise AssertionError(f"spikes differ from the CPU kernel's at {int((got.float() != want).sum())} places")
    if dtype == torch.float32 and not torch.equal(sampling.poisson(x.to(torch.float64), T, s).float(), want):
        raise AssertionError("the CPU kernel and the tensor-op stream disagree")


def bits_cases() -> Iterator[Case]:
    for n in (0, 8, 136, 4096 + 24):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            yield f"pack_bits n={n} {dtype}", lambda n=n, d=dtype: _bits_case(n, d, True)
        yield f"pack_bits n={n} not binary", lambda n=n: _bits_case(n, torch.float32, False)
    for n, binary in ((136, True), (4096 + 24, True), (136, False)):
        yield f"late release n={n} binary={binary}", lambda n=n, b=binary: _late_case(n, b)


def linear_cases() -> Iterator[Case]:
    for R, K, n_out, bias, p in ((6, 70, 40, True, 0.2), (3, 64, 7, False, 0.05), (1, 129, 33, True, 1.0),
                             (0, 10, 5, True, 0.2), (4, 1, 3, False, 0.5)):
        yield f"spike_linear R={R} K={K} n_out={n_out}", lambda a=(R, K, n_out, bias, p): _rows_case(*a)


def poisson_cases() -> Iterator[Case]:
    for shape, T in (((3, 5), 4), ((70,), 1), ((2, 3, 11), 3), ((0, 4), 2)):
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            yield f"poisson {shape} T={T} {dtype}", lambda s=shape, t=T, d=dtype: _poisson_case(
                s, t, d, 12345)
    yield "poisson seed above 2**62", lambda: _poisson_case((5, 7), 3, torch.float32, 2**63 - 2**31 + 5)


def _point_cpu_at_triton() -> None:
    """In this child only: the CPU kernels of the scan ops replaced by the Triton ones, so that the
    backend's own run (operator, autograd registration, arguments) is exercised on CPU tensors."""
    from softspike.kernels import scan_native
    from softspike.kernels.triton import scan

    scan_native.lif_multistep.register_kernel("cpu")(scan.lif_multistep_cuda)
    scan_native.lif_multistep_backward.register_kernel("cpu")(scan.lif_multistep_backward_cuda)


FAMILIES: dict[str, Callable[[], Iterator[Case]]] = {
    "scan": scan_cases, "bits": bits_cases, "spike_linear": linear_cases, "poisson": poisson_cases,
}


def main(families: list[str]) -> None:
    assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"
    _point_cpu_at_triton()
    out: dict[str, list[tuple[str, str | None]]] = {}
    for fam in families:
        rows = out.setdefault(fam, [])
        for name, fn in FAMILIES[fam]():
            try:
                fn()
                rows.append((name, None))
            except Exception as err:
                rows.append((name, f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=-3)}"))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:] or list(FAMILIES))
