"""The compiled generic scan inside every autograd context a user or the training loop opens.

A regression suite for issue 13: `softspike train` of `cuba_lif` crashed once the loop's
`compact_saved_spikes()` (saved-tensor hooks) met the compiled `torch.func.vjp` of the backward,
and `torch.compile(fullgraph=True)` traced a file-system probe. Every case compares spikes and
input gradients with the reference loop at a size where `auto` picks the compiled path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import torch

import softspike
from softspike.kernels.bitpack import compact_saved_spikes

SHAPE = (3, 2, 2304)  # 4,608 neurons per step: above generic.MIN_NUMEL


def _weights() -> torch.Tensor:
    return torch.linspace(-1.0, 2.0, SHAPE[-1])


def _run(x0: torch.Tensor, backend: str, ctx: Callable[[], Any] = contextlib.nullcontext,
         backward_inside: bool = False) -> tuple[str | None, torch.Tensor, torch.Tensor]:
    neuron = softspike.get_registry().neurons.create("cuba_lif", step_mode="m", backend=backend)
    x = x0.clone().requires_grad_(True)
    with ctx():
        y = neuron(x)
        if backward_inside:
            (y * _weights()).sum().backward()
    if not backward_inside:
        (y * _weights()).sum().backward()
    assert x.grad is not None
    return neuron.backend_used, y.detach(), x.grad


@pytest.fixture(scope="module")
def reference() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x0 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * 2
    _, y, g = _run(x0, "reference")
    return x0, y, g


CONTEXTS: dict[str, tuple[Callable[[], Any], bool]] = {
    "plain": (contextlib.nullcontext, False),
    "saved_tensor_hooks": (compact_saved_spikes, False),
    "saved_tensor_hooks_backward_inside": (compact_saved_spikes, True),
    "anomaly_mode": (torch.autograd.detect_anomaly, False),
}


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
@pytest.mark.parametrize("name", list(CONTEXTS))
def test_compiled_scan_in_autograd_contexts(reference: Any, name: str) -> None:
    x0, y_ref, g_ref = reference
    ctx, inside = CONTEXTS[name]
    for _ in range(2):  # the second call is the one that used to raise
        used, y, g = _run(x0, "auto", ctx, inside)
        assert used == "compiled"
        assert torch.equal(y, y_ref)
        torch.testing.assert_close(g, g_ref)
    # the hooks state torch.func sets is restored: a new hooks context can still be entered
    assert torch._C._autograd._saved_tensors_hooks_get_disabled_error_message() is None
    with compact_saved_spikes():
        pass


def test_compiled_scan_no_grad_func_and_compile(reference: Any) -> None:
    x0, y_ref, g_ref = reference
    neuron = softspike.get_registry().neurons.create("cuba_lif", step_mode="m")
    with torch.no_grad():
        assert torch.equal(neuron(x0), y_ref)
    assert neuron.backend_used == "compiled"
    grad = torch.func.grad(lambda x: (neuron(x) * _weights()).sum())(x0)
    torch.testing.assert_close(grad, g_ref)
    compiled = torch.compile(neuron, fullgraph=True)
    assert torch.equal(compiled(x0), y_ref)


FIRST_CALL_IN_HOOKS = """
import torch, softspike
from softspike.kernels.bitpack import compact_saved_spikes
torch.set_num_threads(1)
neuron = softspike.get_registry().neurons.create("cuba_lif", step_mode="m")
x = torch.randn(3, 2, 2304, requires_grad=True)
for _ in range(2):
    with compact_saved_spikes():
        y = neuron(x)
    y.sum().backward()
    assert neuron.backend_used == "compiled", neuron.backends_skipped
print("ok", softspike.kernels.scan_compiled.status())
"""


@pytest.mark.slow  # a child process
def test_first_compiled_call_inside_saved_tensor_hooks() -> None:
    # A fresh process: the first compile (and its backward probe) happens inside the hooks, as in
    # `softspike train`; in this process earlier tests have already compiled the step.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", FIRST_CALL_IN_HOOKS], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ok (True, 'compiled')" in out.stdout
