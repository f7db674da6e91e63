"""The `torch.ops.softspike` operators: argument checks, empty input on every path, layouts, one
random stream with or without the kernels, two threads at once, and the kernels built for CPUs
other than this one (the default build picks AVX-512 where the machine has it)."""

from __future__ import annotations

import platform
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import torch
from torch import Tensor

from softspike.core.errors import KernelInputError
from softspike.core.neuron import Neuron
from softspike.kernels import native
from softspike.kernels.bitpack import pack_spikes, unpack_spikes
from softspike.kernels.spike_linear import SpikeLinear
from softspike.neuron import LIFNode
from softspike.plugins import surrogates as sg
from softspike.plugins.encoders import LatencyEncoder, PoissonEncoder
from softspike.plugins.neurons import IF, LIF, ParametricLIF

NATIVE = native.load() is not None
needs_native = pytest.mark.skipif(not NATIVE, reason=f"native kernels unavailable: {native.status()[0]}")
PATHS = ["native", "torch", "reference"] if NATIVE else ["torch", "reference"]
LIF_ARGS = (1, 2.0, 0.0, 1.0, 0.0, True, False, 0, 4.0, 1.0)  # dyn, tau, v_rest, v_th, v_reset, hard, ...


def without_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, as on a machine without a C++ compiler."""
    monkeypatch.setattr(native, "_tried", True)
    monkeypatch.setattr(native, "_lib", None)


# -- empty input (issue 10 item 1): empty results, never a dead interpreter -------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(4, 0, 5), (4, 3, 0), (2, 0)])
@pytest.mark.parametrize("dyn", [LIF, ParametricLIF])
def test_empty_input_every_neuron_path(path: str, shape: tuple[int, ...], dyn: type) -> None:
    neuron = Neuron(dyn(), step_mode="m", backend=path)
    x = torch.rand(shape, requires_grad=True)
    s = neuron(x)
    assert neuron.backend_used == path and s.shape == x.shape
    s.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert all(p.grad is None or float(p.grad) == 0.0 for p in neuron.parameters())


def test_empty_input_2020_node() -> None:
    assert LIFNode(step_mode="m")(torch.rand(4, 0, 5)).shape == (4, 0, 5)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize("shape", [(0, 70), (3, 0, 70), (5, 0)])
def test_empty_input_spike_linear(shape: tuple[int, ...]) -> None:
    n_in = shape[-1]
    layer, ref = SpikeLinear(n_in, 80), torch.nn.Linear(n_in, 80)
    ref.load_state_dict(layer.state_dict())
    x = torch.zeros(shape, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(y, ref(x))
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert layer.weight.grad is not None and not layer.weight.grad.any()
    assert layer.bias.grad is not None and layer.bias.grad.shape == (80,)


@pytest.mark.parametrize("kernels", [True, False])
def test_empty_input_poisson_and_bits(kernels: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not kernels:
        without_kernels(monkeypatch)
    assert PoissonEncoder().encode(torch.rand(0, 3), 4).shape == (4, 0, 3)
    empty = torch.empty(0, 8)
    assert unpack_spikes(pack_spikes(empty, min_bytes=0)).shape == (0, 8)


def test_empty_batch_spec_network_in_process() -> None:
    from softspike.models import build, load_spec

    net = build(load_spec("mnist_fc"))
    out = net(torch.rand(0, 1, 28, 28))
    assert out.shape == (0, 10)
    out.sum().backward()


@pytest.mark.slow  # a child process
def test_empty_batch_spec_network_does_not_kill_the_interpreter() -> None:
    """The case that died with SIGFPE (exit 136) before the ops guarded empty input."""
    code = (
        "import torch; from softspike.models import build, load_spec; from softspike.neuron import LIFNode\n"
        "net = build(load_spec('mnist_fc'))\n"
        "assert net(torch.rand(0, 1, 28, 28)).shape == (0, 10)\n"
        "assert LIFNode(step_mode='m')(torch.rand(4, 0, 5)).shape == (4, 0, 5)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# -- argument checks, in the op ----------------------------------------------------------------------


@needs_native
def test_ops_reject_bad_arguments_with_clear_errors() -> None:
    ops = torch.ops.softspike
    x, w = torch.rand(3, 4), torch.zeros(())
    bad: list[tuple[Any, str]] = [
        (lambda: ops.lif_multistep(x.double(), w, *LIF_ARGS), "dtype torch.float64"),
        (lambda: ops.lif_multistep(x, torch.zeros(2), *LIF_ARGS), "one number"),
        (lambda: ops.lif_multistep(x, w, 7, *LIF_ARGS[1:]), "dyn must be"),
        (lambda: ops.lif_multistep(x, w, 1, 0.0, *LIF_ARGS[2:]), "tau must be a finite number > 0"),
        (lambda: ops.lif_multistep(x, w, 1, 2.0, 0.0, float("nan"), *LIF_ARGS[4:]), "v_threshold"),
        (lambda: ops.lif_multistep(torch.tensor(1.0).squeeze(), w, *LIF_ARGS), "at least 1 dims"),
        (lambda: ops.lif_multistep_backward(torch.rand(3, 5), x, w, *LIF_ARGS), "grad has shape"),
        (lambda: ops.lif_multistep_backward(x, x, w, *LIF_ARGS[:7], 9, 4.0, 1.0), "gate must be"),
        (lambda: ops.spike_linear(x, torch.rand(5, 3), None), "do not fit"),
        (lambda: ops.spike_linear(x, torch.rand(5, 4), torch.rand(4)), "bias must have shape"),
        (lambda: ops.poisson(x, 0, torch.zeros(1, dtype=torch.int64)), "T must be >= 1"),
        (lambda: ops.poisson(x, 2, torch.zeros(3)), "seed must be"),
        (lambda: ops.poisson(x, 2, torch.zeros(2, dtype=torch.int64)), "seed must be an int64 tensor of 1"),
        (lambda: ops.pack_bits(torch.rand(4, 3).t()), "contiguous"),
        (lambda: ops.unpack_bits(torch.zeros(2, dtype=torch.uint8), [3, 3]), "cannot fill"),
    ]
    for call, match in bad:
        with pytest.raises(KernelInputError, match=match):
            call()


@needs_native
def test_ops_are_checked_while_tracing_too() -> None:
    """The fake (shape) implementations make the same checks: a traced graph fails where eager would."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x = torch.empty(3, 4)
        assert torch.ops.softspike.lif_multistep(x, torch.zeros(()), *LIF_ARGS).shape == (3, 4)
        with pytest.raises(KernelInputError, match="dtype"):
            torch.ops.softspike.lif_multistep(x.double(), torch.zeros(()), *LIF_ARGS)


# -- layouts ----------------------------------------------------------------------------------------


def _layouts() -> Iterator[tuple[str, Tensor]]:
    torch.manual_seed(3)
    yield "channels_last per step", torch.randn(4, 2, 5, 6, 3).permute(0, 1, 4, 2, 3)  # [T, B, C, H, W]
    yield "transposed", torch.randn(4, 7, 3).transpose(1, 2)
    yield "strided slice", torch.randn(4, 3, 10)[:, :, ::2]


@pytest.mark.parametrize("path", PATHS)
def test_neuron_output_keeps_the_input_layout(path: str) -> None:
    for name, x in _layouts():
        x = (x + 0.6).requires_grad_()
        neuron = Neuron(LIF(2.0), step_mode="m", backend=path)
        s = neuron(x)
        (gx,) = torch.autograd.grad(s, x, torch.ones_like(s))
        ref = Neuron(LIF(2.0), step_mode="m", backend="reference")
        xc = x.detach().contiguous().requires_grad_()
        s_ref = ref(xc)
        (g_ref,) = torch.autograd.grad(s_ref, xc, torch.ones_like(s_ref))
        assert torch.equal(s, s_ref), name
        torch.testing.assert_close(gx, g_ref, rtol=1e-4, atol=1e-5)
        if path == "native":  # dense layouts come back as they came; others as torch's elementwise ops do
            want = x.stride() if name != "strided slice" else torch.empty_like(x).stride()
            assert s.stride() == want and gx.stride() == want, name


def test_poisson_output_keeps_the_input_layout() -> None:
    x = torch.rand(2, 3, 5, 4).to(memory_format=torch.channels_last)
    s = PoissonEncoder().encode(x, 3)
    assert s.shape == (3, *x.shape) and s[0].is_contiguous(memory_format=torch.channels_last)


# -- one random stream ------------------------------------------------------------------------------


def _encode(x: Tensor, seed: int = 7) -> Tensor:
    torch.manual_seed(seed)
    return PoissonEncoder().encode(x, 6)


def test_poisson_same_stream_with_and_without_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    xs = [torch.rand(5, 37), torch.rand(3, 4, 6).transpose(0, 2), torch.rand(4, 9)[:, ::2]]
    with_kernels = [_encode(x) for x in xs]
    with_kernels_f64 = [_encode(x.double()) for x in xs]
    without_kernels(monkeypatch)
    for x, a, a64 in zip(xs, with_kernels, with_kernels_f64):
        b = _encode(x)
        assert torch.equal(a, b) and torch.equal(a64, b.double())
        assert b.shape == (6, *x.shape) and 0.2 < float(b.mean()) < 0.8


def test_encoder_never_replays_another_batch() -> None:
    """Single-step use of a time-dependent encoder: a new batch of the same shape starts over."""
    enc = LatencyEncoder(T=4)
    first, second = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.equal(enc(first), first)  # x = 1 fires at step 0
    assert torch.equal(enc(second), second)  # not step 1 of `first`
    assert torch.equal(enc(second), torch.zeros(1, 2))
    kept = second.clone()
    second[0, 0] = 1.0  # the caller reuses its tensor for the next batch
    assert torch.equal(enc(second), torch.ones(1, 2))
    assert torch.equal(kept, torch.tensor([[0.0, 1.0]]))
    half = torch.tensor([[1.0, 0.5]])  # fires at steps 0 and 2 (round(1.5) = 2)
    assert torch.equal(enc(half), torch.tensor([[1.0, 0.0]]))
    assert torch.equal(enc(half.clone()), torch.zeros(1, 2))  # equal values in another tensor: step 1 goes on
    assert torch.equal(enc(half), torch.tensor([[0.0, 1.0]]))
    half.mul_(1.0)  # written to in place, same values: compared by value, step 3 goes on
    assert torch.equal(enc(half), torch.zeros(1, 2))
    assert torch.equal(enc(half), torch.tensor([[1.0, 0.0]]))  # past T: the sample starts over


# -- threads (issue 10 item 3) ----------------------------------------------------------------------


@needs_native
def test_two_threads_equal_serial_results() -> None:
    """Two threads running the compiled path at once, 1,000 forward and backward passes each, get the
    serial results every time (before the pool's lock, ~4 runs in 10 went wrong)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(SpikeLinear(32, 256), Neuron(LIF(2.0), step_mode="m"))
    with torch.no_grad():
        net[0].weight.add_(0.1)  # ~16 active inputs: the neurons fire
    xs = [(torch.rand(4, 32, 32) < 0.5).float() for _ in range(2)]  # outputs of 128 KiB: pooled
    gs = [torch.randn(4, 32, 256) for _ in range(2)]

    def run(i: int) -> tuple[Tensor, Tensor]:
        x = xs[i].clone().requires_grad_()
        s = net(x)
        (gx,) = torch.autograd.grad(s, x, gs[i])
        return s.detach(), gx

    want = [run(i) for i in range(2)]
    assert net[1].backend_used == "native" and all(float(w[0].mean()) > 0.02 for w in want)
    wrong = [0, 0]
    start = threading.Barrier(2, timeout=30)

    def work(i: int) -> None:
        start.wait()
        for _ in range(1000):
            s, gx = run(i)
            wrong[i] += not (torch.equal(s, want[i][0]) and torch.equal(gx, want[i][1]))

    interval = sys.getswitchinterval()
    threads_before = torch.get_num_threads()
    sys.setswitchinterval(1e-5)  # switch threads often: without the lock, races show up in every run
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(work, i) for i in range(2)]:
                f.result(timeout=120)
    finally:
        sys.setswitchinterval(interval)
        torch.set_num_threads(threads_before)
    assert wrong == [0, 0]


# -- the kernels built for other CPUs --------------------------------------------------------------


@pytest.fixture(scope="module")
def variants() -> dict[str, Any]:
    # Conditional on the machine: CI (x86-64 with g++) builds and runs every variant.
    if not NATIVE:
        pytest.skip(f"native kernels unavailable: {native.status()[0]}")  # no g++; CI builds them
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the variants are x86-64 builds; this machine is {platform.machine()}")  # CI is x86-64
    with ThreadPoolExecutor(len(native.VARIANTS)) as pool:  # the compiler runs outside the GIL
        libs = dict(zip(native.VARIANTS, pool.map(native.build_variant, native.VARIANTS)))
    return libs


@pytest.mark.parametrize("variant", list(native.VARIANTS))
def test_other_cpu_builds_give_the_same_results(
    variant: str, variants: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No-AVX-512 and baseline x86-64 builds, through the same ops: spikes and Poisson samples
    identical to the default build's, gradients equal to rounding."""
    torch.manual_seed(11)
    x = torch.randn(9, 3, 1500) + 0.4  # several blocks per thread, a partial last block
    g = torch.randn_like(x)
    cases = [(IF(), sg.Sigmoid(), 0.0), (LIF(2.0), sg.ATan(), None), (ParametricLIF(), sg.Triangle(0.7, 1.3), 0.0),
             (LIF(3.0), sg.Erf(), 0.0)]
    spikes = torch.rand(50, 130)
    bits_in = (spikes < 0.3).float().requires_grad_()
    linear = SpikeLinear(130, 100)

    def results() -> tuple[list[Tensor], list[Tensor]]:
        exact, close = [], []
        for dyn, gate, v_reset in cases:
            neuron = Neuron(dyn, 1.0, v_reset, gate, step_mode="m", backend="native")
            xg = x.clone().requires_grad_()
            s = neuron(xg)
            exact.append(s.detach())
            close += torch.autograd.grad(s, [xg, *neuron.parameters()], g)
        y = linear(bits_in)
        close += [y.detach(), *torch.autograd.grad(y, [bits_in, linear.weight], torch.ones_like(y))]
        return [*exact, _encode(spikes)], close

    default = results()
    monkeypatch.setattr(native, "_lib", variants[variant])
    other = results()
    for a, b in zip(default[0], other[0]):
        assert float(a.mean()) > 0.01 and torch.equal(a, b)
    for a, b in zip(default[1], other[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * (float(a.abs().max()) + 1.0))
