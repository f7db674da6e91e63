"""Fused multi-step neurons against the reference loop: identical spikes, gradients to rounding."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from softspike.core.backends import BackendError
from softspike.core.dynamics import Dynamics, State
from softspike.core.errors import UnknownPluginError
from softspike.core.neuron import Neuron
from softspike.core.registry import backend_info, get_registry
from softspike.core.surrogate import Surrogate
from softspike.kernels import native
from softspike.plugins import surrogates as sg
from softspike.plugins.neurons import ALIF, IF, LIF, ParametricLIF

NATIVE = native.load() is not None
# The compiled kernels build wherever a C++ compiler is (CI included); only without one, or with
# SOFTSPIKE_NO_NATIVE=1, do the native-only tests skip (the tensor-op path is then tested instead).
needs_native = pytest.mark.skipif(not NATIVE, reason=f"native kernels unavailable: {native.status()[0]}")
BACKENDS = ["torch", "auto"]


def select(neuron: Neuron, x: Tensor, backend: str = "auto") -> str:
    """The name of the backend the catalog picks for this neuron and input."""
    return get_registry().backends.select(neuron.dynamics, neuron.cfg, x, backend).backend.name


def gates() -> st.SearchStrategy[Surrogate]:
    alpha = st.floats(0.5, 8.0)
    return st.one_of(
        alpha.map(sg.Sigmoid), alpha.map(sg.ATan), alpha.map(sg.PiecewiseQuadratic),
        st.floats(1.0, 30.0).map(sg.FastSigmoid), alpha.map(sg.Erf), alpha.map(sg.StraightThrough),
        st.builds(sg.Triangle, alpha=st.floats(0.2, 3.0), width=st.floats(0.2, 2.0)),
    )


def dynamics() -> st.SearchStrategy[Dynamics]:
    tau = st.floats(1.0, 20.0)
    return st.one_of(
        st.just(IF()).map(lambda _: IF()),
        tau.map(LIF),
        st.floats(1.1, 10.0).map(ParametricLIF),
        st.builds(ALIF, tau=tau, tau_adapt=st.floats(1.0, 50.0), beta=st.floats(0.0, 1.0)),
    )


def grads(neuron: Neuron, x: Tensor, g: Tensor) -> tuple[Tensor, list[Tensor]]:
    x = x.detach().requires_grad_()
    s = neuron(x)
    params = list(neuron.dynamics.parameters())
    out = torch.autograd.grad(s, [x, *params], g)
    return s.detach(), list(out)


def assert_same(neuron: Neuron, x: Tensor, backend: str) -> None:
    g = torch.randn_like(x)
    neuron.backend = "reference"
    s_ref, g_ref = grads(neuron, x, g)
    neuron.backend = backend
    s, got = grads(neuron, x, g)
    assert torch.equal(s, s_ref), f"spikes differ ({neuron.backend_used})"
    for a, b in zip(got, g_ref):
        scale = float(b.abs().max()) + 1.0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5 * scale)


@given(
    dyn=dynamics(),
    gate=gates(),
    v_threshold=st.floats(0.2, 2.0),
    v_reset=st.one_of(st.none(), st.floats(-1.0, 0.5)),
    detach=st.booleans(),
    reset_grad=st.sampled_from(["surrogate", "straight_through"]),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 4), st.integers(1, 70)),
    gain=st.floats(0.2, 3.0),
    seed=st.integers(0, 2**31 - 1),
    backend=st.sampled_from(BACKENDS),
)
def test_fused_matches_reference(
    dyn: Dynamics, gate: Surrogate, v_threshold: float, v_reset: float | None, detach: bool,
    reset_grad: str, shape: tuple[int, int, int], gain: float, seed: int, backend: str,
) -> None:
    if v_reset is not None and v_reset >= v_threshold:
        v_reset = v_threshold - 1.0
    neuron = Neuron(dyn, v_threshold, v_reset, gate, detach, reset_grad, step_mode="m")  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen) * gain + 0.3 * v_threshold
    torch.manual_seed(seed)
    assert_same(neuron, x, backend)


@pytest.mark.parametrize("gate", [sg.Sigmoid(), sg.ATan(), sg.PiecewiseQuadratic(), sg.FastSigmoid(),
                                  sg.Erf(), sg.Triangle(0.7, 1.3), sg.StraightThrough()])
@needs_native
@pytest.mark.parametrize("dyn", [IF, LIF, ParametricLIF])
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach", [False, True])
def test_native_every_gate(gate: Surrogate, dyn: type[Dynamics], v_reset: float | None, detach: bool) -> None:
    """The compiled path for every built-in gate and reset, on a layer big enough to split in blocks."""
    d = LIF(2.0) if dyn is LIF else dyn()
    neuron = Neuron(d, 1.0, v_reset, gate, detach, step_mode="m")
    x = torch.randn(9, 3, 1500) + 0.4
    assert_same(neuron, x, "native")
    assert neuron.backend_used == "native"
    assert 0.02 < float(neuron(x).detach().mean()) < 0.9  # the neurons do fire


def test_auto_picks_the_paths() -> None:
    x = torch.rand(4, 2, 3)
    lif = Neuron(LIF(2.0), step_mode="m")
    lif(x)
    assert lif.backend_used == ("native" if NATIVE else "torch")
    alif = Neuron(ALIF(), step_mode="m")
    alif(x)
    assert alif.backend_used == "torch"
    straight = Neuron(LIF(2.0), reset_grad="straight_through", step_mode="m")
    straight(x)
    assert straight.backend_used == "torch"
    lif(x.double())
    assert lif.backend_used == "torch"
    lif.backend = "reference"
    lif(x)
    assert lif.backend_used == "reference"
    info = {b["name"]: b for b in backend_info()["backends"]}
    assert {"native", "torch", "compiled", "reference"} <= set(info) and info["native"]["status"]
    with pytest.raises(UnknownPluginError, match="unknown backend 'fast'"):
        select(lif, x, "fast")
    with pytest.raises(UnknownPluginError, match="unknown backend 'fast'"):
        get_registry().neurons.create("lif", backend="fast")


class Quadratic(Dynamics):
    """A third-party dynamics: no fused kernel, so the reference loop runs."""

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v = state["v"]
        return v + 0.1 * v * v + x, state


class Bump(Surrogate):
    """A third-party gate: the tensor-op path evaluates its derivative."""

    def primitive(self, x: Tensor) -> Tensor:
        return 0.5 * (1 + torch.tanh(x))

    def derivative(self, x: Tensor) -> Tensor:
        return 0.5 * (1 - torch.tanh(x) ** 2)


def test_third_party_dynamics_and_gate() -> None:
    x = torch.randn(6, 3, 5) * 0.5 + 0.3
    quad = Neuron(Quadratic(), step_mode="m")
    assert_same(quad, x, "auto")
    assert quad.backend_used == "reference"
    bump = Neuron(LIF(3.0), surrogate=Bump(), step_mode="m")
    assert_same(bump, x, "auto")
    assert bump.backend_used == "torch"


def test_fallback_when_native_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_tried", True)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setattr(native, "_status", "unavailable: test")
    neuron = Neuron(LIF(2.0), step_mode="m")
    assert_same(neuron, torch.randn(5, 2, 7) + 0.5, "auto")
    # backends of higher priority (triton: CUDA only) are passed over first, each with its reason
    assert neuron.backend_used == "torch" and ("native", "unavailable: test") in neuron.backends_skipped
    assert {b["name"]: b["available"] for b in backend_info()["backends"]}["native"] is False
    with pytest.raises(BackendError, match="unavailable: test"):
        select(neuron, torch.zeros(2, 2), "native")


def test_inference_and_non_contiguous_input() -> None:
    x = (torch.randn(3, 40, 8) + 0.5).transpose(1, 2)  # [T, 8, 40], not contiguous
    neuron = Neuron(ParametricLIF(), step_mode="m")
    assert_same(neuron, x, "auto")
    with torch.no_grad():
        neuron.backend = "reference"
        ref = neuron(x)
        neuron.backend = "auto"
        assert torch.equal(neuron(x), ref)


def test_pooled_outputs_are_never_overwritten_while_held() -> None:
    neuron = Neuron(LIF(2.0), step_mode="m")
    x = torch.randn(8, 64, 700) + 0.5  # > 1 MiB: the output comes from the buffer pool
    first = neuron(x)
    kept = first.clone()
    view = first[3]
    del first
    second = neuron(x + 1.0)
    assert torch.equal(view, kept[3])
    assert second.data_ptr() != view.data_ptr()


def test_poisson_sampler() -> None:
    from softspike.plugins.encoders import PoissonEncoder

    enc = PoissonEncoder()
    x = torch.tensor([0.0, 1.0, 0.05, 0.3, 0.5, 0.9]).repeat(400, 1)
    torch.manual_seed(1)
    a = enc.encode(x, 50)
    torch.manual_seed(1)
    assert torch.equal(enc.encode(x, 50), a)  # repeatable under torch.manual_seed
    assert not torch.equal(enc.encode(x, 50), a)
    assert a.shape == (50, 400, 6) and a.dtype == torch.float32
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    rate = a.mean(dim=(0, 1))
    assert rate[0] == 0 and rate[1] == 1
    n = 50 * 400
    for p, r in zip(x[0, 2:].tolist(), rate[2:].tolist()):
        assert abs(r - p) < 5 * (p * (1 - p) / n) ** 0.5
    # neighbouring steps and neurons are uncorrelated
    b = a[:, :, 4]
    corr_t = ((b[1:] - 0.5) * (b[:-1] - 0.5)).mean()
    corr_n = ((b[:, 1:] - 0.5) * (b[:, :-1] - 0.5)).mean()
    assert abs(float(corr_t)) < 0.02 and abs(float(corr_n)) < 0.02
    with pytest.raises(ValueError, match="intensities"):
        enc.encode(torch.tensor([1.5]), 4)


@needs_native
def test_compact_saved_spikes_same_gradients() -> None:
    from softspike.kernels.bitpack import _Packed, compact_saved_spikes, pack_spikes

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 96), Neuron(LIF(2.0), step_mode="m"), torch.nn.Linear(96, 5))
    x = (torch.rand(6, 50, 64) < 0.3).float()

    def run() -> list[Tensor]:
        net.zero_grad()
        net(x).square().sum().backward()
        return [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]

    plain = run()
    packed: list[bool] = []

    def probe(t: Tensor) -> Tensor:
        packed.append(isinstance(pack_spikes(t, 1024), _Packed))
        return t

    with torch.autograd.graph.saved_tensors_hooks(probe, lambda t: t):
        net(x)
    assert sum(packed) == 2  # the input spikes and the hidden spikes; not the weights or the membrane input
    with compact_saved_spikes(min_bytes=1024):
        net.zero_grad()
        loss = net(x).square().sum()
    loss.backward()
    for a, p in zip(plain, net.parameters()):
        assert torch.equal(a, p.grad)
    assert not isinstance(pack_spikes(torch.rand(4096)), _Packed)


@pytest.mark.parametrize("shape", [(3, 5, 70, 13), (2, 40, 150, 200), (4, 9, 64, 64)])
def test_spike_linear_matches_linear(shape: tuple[int, int, int, int]) -> None:
    from softspike.kernels.spike_linear import SpikeLinear

    T, B, n_in, n_out = shape
    torch.manual_seed(n_in)
    ref = torch.nn.Linear(n_in, n_out)
    sl = SpikeLinear(n_in, n_out)
    sl.load_state_dict(ref.state_dict())
    for x in [(torch.rand(T, B, n_in) < 0.2).float(), torch.rand(T, B, n_in)]:  # spikes, then analog input
        x.requires_grad_()
        g = torch.randn(T, B, n_out)
        outs = []
        for m in (ref, sl):
            m.zero_grad()
            y = m(x)
            (gx,) = torch.autograd.grad(y, [x], g, retain_graph=True)
            y.backward(g)
            outs.append((y.detach(), gx, m.weight.grad, m.bias.grad))
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_native
def test_native_streaming_stores_on_large_outputs() -> None:
    """Outputs from 32 MiB on are written with non-temporal stores: same values."""
    neuron = Neuron(LIF(2.0), step_mode="m")
    x = torch.randn(3, 3, 1 << 20) * 0.8 + 0.5
    assert x.numel() >= 8 << 20
    g = torch.randn_like(x)
    neuron.backend = "torch"
    s_ref, (g_ref,) = grads(neuron, x, g)
    neuron.backend = "native"
    s, (got,) = grads(neuron, x, g)
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(got, g_ref, rtol=1e-4, atol=1e-5)


@needs_native
@pytest.mark.parametrize("dyn", [IF, LIF, ParametricLIF])
@pytest.mark.parametrize("gate", [sg.Sigmoid(3.0), sg.ATan()])
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_native_many_blocks_per_thread(
    dyn: type[Dynamics], gate: Surrogate, v_reset: float | None, detach: bool, threads: int
) -> None:
    """Each thread runs several blocks (BPTT of one interleaved with the recompute of the next), the
    last one partial, rows not a multiple of 16 long."""
    d = LIF(3.0) if dyn is LIF else dyn()
    neuron = Neuron(d, 1.0, v_reset, gate, detach, step_mode="m")
    x = torch.randn(50, 3, 2001, generator=torch.Generator().manual_seed(5)) + 0.4
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert_same(neuron, x, "native")
    finally:
        torch.set_num_threads(before)
    assert neuron.backend_used == "native"


@needs_native
@pytest.mark.parametrize("dyn", [LIF, ParametricLIF])
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_native_streaming_unaligned_rows(dyn: type[Dynamics], v_reset: float | None) -> None:
    """Large outputs whose rows are not 64-byte aligned (odd M): the streaming paths fall back to
    plain stores where they must; same values."""
    d = LIF(3.0) if dyn is LIF else dyn()
    neuron = Neuron(d, 1.0, v_reset, sg.Sigmoid(4.0), step_mode="m")
    x = torch.randn(3, 1, (8 << 20) // 3 + 7, generator=torch.Generator().manual_seed(6)) * 0.8 + 0.5
    assert x.numel() >= 8 << 20
    g = torch.randn_like(x)
    neuron.backend = "torch"
    s_ref, g_ref = grads(neuron, x, g)
    neuron.backend = "native"
    s, got = grads(neuron, x, g)
    assert torch.equal(s, s_ref)
    for a, b in zip(got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * (float(b.abs().max()) + 1.0))


def test_other_devices_take_the_tensor_op_path() -> None:
    """No GPU here: a meta tensor stands in for any non-CPU device (shapes flow, kernels are not called)."""
    from softspike.kernels.bitpack import pack_spikes
    from softspike.kernels.spike_linear import spike_linear

    x = torch.empty(4, 2, 3, device="meta")
    lif = Neuron(LIF(2.0), step_mode="m")
    assert select(lif, x) == "torch"
    assert lif(x).shape == x.shape and lif.backend_used == "torch"
    w = torch.empty(5, 3, device="meta")
    assert spike_linear(x, w).shape == (4, 2, 5)
    assert pack_spikes(torch.empty(1 << 16, device="meta")).device.type == "meta"


@needs_native
@pytest.mark.parametrize("rows", [50, 130, 200])
@pytest.mark.parametrize("n_in", [70, 130])
@pytest.mark.parametrize("n_out", [10, 63, 64, 100, 196])
@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_spike_linear_wgrad_sums_row_ranges_in_order(rows: int, n_in: int, n_out: int, nthreads: int) -> None:
    """The weight-gradient kernel (scattered for narrow outputs, gathered per input for wide ones) gives
    exactly: the rows split into nthreads ranges (one range below 64 rows), each range summed in row
    order from zero, the range sums added in order."""
    import ctypes

    R, K, N = rows, n_in, n_out

    lib = native.load()
    assert lib is not None
    torch.manual_seed(R * K + N)
    x = (torch.rand(R, K) < 0.3).float()
    gy = torch.randn(R, N) * torch.exp(torch.randn(R, N) * 4)
    bits = torch.empty((R, (K + 63) // 64), dtype=torch.int64)
    ptr = ctypes.c_void_p
    assert lib.ss_spike_linear_forward(ptr(x.data_ptr()), R, K, ptr(torch.zeros(K, N).data_ptr()), None, None, N,
                                       ptr(bits.data_ptr()), 1)
    gw = torch.full((N, K), float("nan"))
    lib.ss_spike_linear_wgrad(ptr(bits.data_ptr()), R, K, ptr(gy.data_ptr()), N, ptr(gw.data_ptr()), nthreads)
    parts = nthreads if R >= 64 else 1
    want = None
    for p in range(parts):
        acc = torch.zeros(K, N)
        for r in range(R * p // parts, R * (p + 1) // parts):
            on = x[r] > 0
            acc[on] += gy[r]
        want = acc if want is None else want + acc
    assert want is not None
    assert torch.equal(gw, want.t())
