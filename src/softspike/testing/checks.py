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

    A dynamics that declares a `LinearCharge` must compute exactly that expression: its H, θ and
    state at every step of the reference loop are compared bit for bit with the declared step's
    (so `x * (1/tau)` for a declared `x / tau` fails, even where no spike flips), and the spikes of
    the native and tensor-op paths must equal the reference's bit for bit. Input gradients: within
    rtol 1e-4, atol 2e-5·(1 + max|reference gradient|) (float32 sums in another order). The
    compiled generic path may differ where H is within float rounding of the threshold: its spikes
    must agree on more than 99.9% of elements. Returns the path taken.
    """
    _check_declared_step(neuron, x_seq)
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


def _check_declared_step(neuron: Neuron, x_seq: Tensor) -> None:
    """The dynamics' own step equals the step its `LinearCharge` declares, bit for bit, along the
    reference trajectory (no-op for a dynamics that declares nothing)."""
    from softspike.core.step import resting, step_parts
    from softspike.kernels.scan_torch import _Declared

    decl = neuron.dynamics.linear_charge()
    if decl is None:
        return
    declared = _Declared(decl, decl.k_logit.detach() if decl.k_logit is not None else x_seq.new_zeros(()))
    name, cfg = type(neuron.dynamics).__name__, neuron.cfg
    with torch.no_grad():
        state = resting(neuron.dynamics, cfg, x_seq[0])
        for t, x in enumerate(x_seq):
            own = step_parts(neuron.dynamics, cfg, x, state)
            want = step_parts(declared, cfg, x, state)
            for what, a, b in (("H", own[0], want[0]), ("the threshold", own[1], want[1])):
                a, b = torch.as_tensor(a, dtype=x.dtype), torch.as_tensor(b, dtype=x.dtype)
                if not torch.equal(a.expand_as(x), b.expand_as(x)):
                    bad = (a.expand_as(x) != b.expand_as(x)).nonzero()[0].tolist()
                    raise AssertionError(
                        f"{name}: {what} at step {t} differs from its declared {decl} at index {bad}: "
                        f"charge gives {a.expand_as(x)[tuple(bad)].item()!r}, the declaration "
                        f"{b.expand_as(x)[tuple(bad)].item()!r} (a declaring charge must compute the declared "
                        "expression exactly: write x / tau, not x * (1 / tau))"
                    )
            state = own[3]
    # and its derivatives, which the kernels' hand-written backward takes from the declaration
    xg = x_seq[0].detach().clone().requires_grad_(True)
    vg = resting(neuron.dynamics, cfg, xg.detach())["v"].add(0.5).requires_grad_(True)
    grads = []
    for dyn in (neuron.dynamics, declared):
        h, _ = dyn.charge(xg, {**resting(dyn, cfg, xg.detach()), "v": vg}, cfg.v_rest)
        grads.append(torch.autograd.grad(h.sum(), (xg, vg), allow_unused=True))
    for what, a, b in zip(("dH/dX", "dH/dV"), *grads):
        a = torch.zeros_like(xg) if a is None else a
        b = torch.zeros_like(xg) if b is None else b
        assert torch.allclose(a, b, rtol=1e-6, atol=0), (
            f"{name}: {what} of charge is {a.flatten()[:3].tolist()}, its declared {decl} gives "
            f"{b.flatten()[:3].tolist()}: the charge does not compute the declared expression"
        )


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
