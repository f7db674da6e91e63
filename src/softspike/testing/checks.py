"""The conformance properties, as plain functions of concrete inputs."""

from __future__ import annotations

import torch
from torch import Tensor

from softspike.core.dynamics import Dynamics
from softspike.core.encoder import Encoder
from softspike.core.neuron import Neuron
from softspike.core.surrogate import Surrogate


def _assert_binary(s: Tensor, what: str) -> None:
    bad = s[(s != 0) & (s != 1)]
    assert bad.numel() == 0, f"{what}: spikes must be exactly 0 or 1, found {bad[:5].tolist()}"


def _input_grad(loss: Tensor, x: Tensor) -> Tensor | None:
    """dloss/dx, or None where the spikes do not depend on x (a dynamics whose input reaches the
    membrane only through a state variable, one step later)."""
    if not loss.requires_grad:
        return None
    (g,) = torch.autograd.grad(loss, x, allow_unused=True)
    return g


def check_surrogate_backward(gate: Surrogate, x: Tensor) -> None:
    """Forward is Θ(x) exactly; backward equals autograd's derivative of `gate.primitive`."""
    x = x.detach().to(torch.float64)
    xs = x.clone().requires_grad_(True)
    s = gate(xs)
    _assert_binary(s, type(gate).__name__)
    assert torch.equal(s.detach(), (x >= 0).to(s.dtype)), f"{type(gate).__name__}: forward is not Θ(x)"
    (got,) = torch.autograd.grad(s.sum(), xs)
    xp = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(gate.primitive(xp).sum(), xp)
    keep = torch.ones_like(x, dtype=torch.bool)
    for k in gate.kink_points():
        keep &= (x - k).abs() > 1e-9 * max(1.0, abs(k))
    assert torch.allclose(got[keep], want[keep], rtol=1e-6, atol=1e-9), (
        f"{type(gate).__name__}: derivative(x) differs from d primitive/dx: "
        f"x={x[keep].tolist()[:5]} derivative={got[keep].tolist()[:5]} autograd={want[keep].tolist()[:5]}"
    )


def check_dynamics_gradcheck(dynamics: Dynamics, v: Tensor, x: Tensor, v_rest: float = 0.0) -> None:
    """charge(X, state) passes torch.autograd.gradcheck in float64, in X, V and every state variable.

    The extra state variables are drawn like V (`v`, shifted so that they differ from it).
    """
    dyn = dynamics.to(torch.float64)
    x = x.detach().to(torch.float64).requires_grad_(True)
    names = ["v", *sorted(dyn.initial_state(x.detach(), v_rest))]
    values = [v.detach().to(torch.float64).roll(i, -1).add(0.25 * i).requires_grad_(True) for i in range(len(names))]

    def f(x_: Tensor, *state_values: Tensor) -> tuple[Tensor, ...]:
        h, new = dyn.charge(x_, dict(zip(names, state_values)), v_rest)
        return (h, *(new[n] for n in names[1:] if n in new))

    assert torch.autograd.gradcheck(f, (x, *values)), f"{type(dynamics).__name__}: gradcheck of charge failed"


def check_fused_matches_reference(neuron: Neuron, x_seq: Tensor, backend: str = "auto") -> str:
    """The multi-step path `backend` picks gives the reference loop's spikes and input gradients.

    Spikes must be equal bit for bit on the native and tensor-op paths (a dynamics that declares a
    `LinearCharge` must compute exactly that expression); the compiled generic path may differ where
    H is within float rounding of the threshold. Returns the path taken.
    """
    mode, backend_was = neuron.step_mode, neuron.backend
    try:
        neuron.step_mode = "m"
        out = {}
        for b in ("reference", backend):
            neuron.backend = b
            x = x_seq.detach().clone().requires_grad_(True)
            s = neuron(x)
            weights = torch.linspace(0.5, 1.5, s.numel(), dtype=s.dtype).reshape(s.shape)
            g = _input_grad((s * weights).sum(), x)
            out[b] = (s.detach(), g, neuron.backend_used)
        (s_ref, g_ref, _), (s, g, path) = out["reference"], out[backend]
        assert path is not None
        name = type(neuron.dynamics).__name__
        if path == "compiled" and not torch.equal(s, s_ref):
            agree = float((s == s_ref).float().mean())
            assert agree > 0.999, f"{name}: the compiled path's spikes agree with the reference on only {agree:.2%}"
            return path  # a spike flipped by rounding changes every later gradient: compare no further
        assert torch.equal(s, s_ref), f"{name}: the {path} path's spikes differ from the reference loop's"
        if g is not None or g_ref is not None:
            assert g is not None and g_ref is not None, f"{name}: the {path} path loses the input gradient"
            scale = float(g_ref.abs().max()) + 1.0
            assert torch.allclose(g, g_ref, rtol=1e-4, atol=2e-5 * scale), (
                f"{name}: the {path} path's input gradient differs from the reference loop's"
            )
        return path
    finally:
        neuron.step_mode, neuron.backend = mode, backend_was
        neuron.reset()


def check_neuron_binary(neuron: Neuron, x_seq: Tensor) -> Tensor:
    """Spikes are exactly 0/1 in both step modes; returns the multi-step spikes."""
    neuron.reset()
    mode = neuron.step_mode
    try:
        neuron.step_mode = "m"
        s = neuron(x_seq)
        _assert_binary(s, f"{type(neuron.dynamics).__name__} multi-step")
        assert s.shape == x_seq.shape, f"multi-step output shape {tuple(s.shape)} != input {tuple(x_seq.shape)}"
        neuron.step_mode = "s"
        for x in x_seq:
            _assert_binary(neuron(x), f"{type(neuron.dynamics).__name__} single-step")
    finally:
        neuron.reset()
        neuron.step_mode = mode
    return s


def check_multistep_matches_single(neuron: Neuron, x_seq: Tensor) -> None:
    """Multi-step over [T, ...] gives the same spikes and input gradients as T single-step calls."""
    mode = neuron.step_mode
    try:
        neuron.reset()
        neuron.step_mode = "m"
        xm = x_seq.detach().clone().requires_grad_(True)
        sm = neuron(xm)
        weights = torch.linspace(0.5, 1.5, sm.numel(), dtype=sm.dtype).reshape(sm.shape)
        gm = _input_grad((sm * weights).sum(), xm)
        neuron.reset()
        neuron.step_mode = "s"
        xs = x_seq.detach().clone().requires_grad_(True)
        ss = torch.stack([neuron(x) for x in xs])
        gs = _input_grad((ss * weights).sum(), xs)
        assert torch.equal(sm, ss), "multi-step spikes differ from T single-step calls"
        if gm is not None or gs is not None:
            assert gm is not None and gs is not None
            assert torch.allclose(gm, gs, rtol=1e-5, atol=1e-6), "multi-step gradients differ from single-step"
    finally:
        neuron.reset()
        neuron.step_mode = mode


def check_encoder_output(encoder: Encoder, x: Tensor, T: int) -> Tensor:
    """encode(x, T) is [T, *x.shape]; spike codes are binary, the constant code repeats x.

    An encoder with `time_axis` (frames) reads data that carries its own steps: it gets x repeated
    along dim 1, [B, T, ...], and must return exactly that with the time axis first."""
    if getattr(encoder, "time_axis", False):
        seq = x.reshape(x.shape[0] if x.dim() else 1, 1, *x.shape[1:]).expand(-1, T, *x.shape[1:])
        out = encoder.encode(seq, T)
        assert torch.equal(out, seq.transpose(0, 1)), f"{type(encoder).__name__}: not the input's own steps"
        assert torch.equal(encoder(seq[:, 0]), seq[:, 0]), f"{type(encoder).__name__}: one step is not passed through"
        return out
    out = encoder.encode(x, T)
    assert out.shape == (T, *x.shape), f"{type(encoder).__name__}: shape {tuple(out.shape)}"
    if getattr(encoder, "analog", False):
        assert torch.equal(out, x.expand(T, *x.shape)), f"{type(encoder).__name__}: not the input repeated"
    else:
        _assert_binary(out, type(encoder).__name__)
    encoder.reset()
    try:
        encoder.steps_per_sample()
    except ValueError:  # configured for multi-step use only (e.g. a latency code without T)
        return out
    step = encoder(x)
    assert step.shape == x.shape, f"{type(encoder).__name__}: one step has shape {tuple(step.shape)}"
    encoder.reset()
    return out
