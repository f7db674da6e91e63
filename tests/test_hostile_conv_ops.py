"""Hostile arguments to the fused batch-norm neuron op and the byte-index max-pool: each is refused with
a KernelInputError that names the op and the argument, never a crash or a silent wrong result."""

from __future__ import annotations

import pytest
import torch

from softspike.core.errors import KernelInputError
from softspike.kernels import native
from softspike.kernels.bn_lif import batch_stats, bn_lif
from softspike.kernels.spike_pool import max_pool2d, max_pool2d_backward

pytestmark = pytest.mark.skipif(native.load() is None, reason="the compiled kernels are not available here")

LIF = (1, 2.0, 0.0, 1.0, 0.0, True, False, 0, 4.0, 1.0)  # dyn, tau, v_rest, v_th, v_reset, hard, detach, gate...


def _bn_args(x: torch.Tensor, c: int = 3) -> tuple[torch.Tensor, ...]:
    return x, torch.ones(c), torch.zeros(c), torch.zeros(c), torch.ones(c), torch.zeros(())


@pytest.mark.parametrize("x, match", [
    (torch.randn(2, 2, 3, 4, 4, dtype=torch.float64), "dtype"),
    (torch.randn(2, 2, 5, 4, 4), "shape \\[5\\]"),
    (torch.randn(1, 1, 3), "more than one value"),
    (torch.randn(4, 3), "\\[T, B, C"),
])
def test_bn_lif_refuses_bad_tensors(x: torch.Tensor, match: str) -> None:
    with pytest.raises(KernelInputError, match=f"softspike::bn_lif.*{match}"):
        bn_lif(*_bn_args(x), *LIF)


@pytest.mark.parametrize("momentum, eps", [(float("nan"), 1e-5), (1.5, 1e-5), (0.1, 0.0), (0.1, float("inf"))])
def test_batch_stats_refuses_bad_numbers(momentum: float, eps: float) -> None:
    with pytest.raises(KernelInputError, match="softspike::bn_lif"):
        batch_stats(torch.randn(2, 2, 3, 4, 4), torch.zeros(3), torch.ones(3), momentum, eps)


def test_bn_lif_refuses_bad_neuron_numbers() -> None:
    bad = (1, float("nan"), *LIF[2:])
    with pytest.raises(KernelInputError, match="tau"):
        bn_lif(*_bn_args(torch.randn(2, 2, 3, 4, 4)), *bad)


@pytest.mark.parametrize("x, kernel, stride, match", [
    (torch.rand(1, 2, 8, 8), [16, 16], [1, 1], "kernel sides"),
    (torch.rand(1, 2, 8, 8), [2, 2], [0, 1], "strides"),
    (torch.rand(1, 2, 3, 3), [4, 4], [4, 4], "exceeds"),
    (torch.rand(2, 8, 8), [2, 2], [2, 2], "\\[N, C, H, W\\]"),
    (torch.rand(1, 2, 8, 8).double(), [2, 2], [2, 2], "dtype"),
])
def test_max_pool_refuses_bad_arguments(x: torch.Tensor, kernel: list[int], stride: list[int], match: str) -> None:
    with pytest.raises(KernelInputError, match=f"softspike::max_pool2d.*{match}"):
        max_pool2d(x, kernel, stride)


def test_max_pool_backward_refuses_mismatched_gradients() -> None:
    _, idx = max_pool2d(torch.rand(1, 2, 8, 8), [2, 2], [2, 2])
    with pytest.raises(KernelInputError, match="must be"):
        max_pool2d_backward(torch.rand(1, 2, 3, 3), idx, [1, 2, 8, 8], False, [2, 2], [2, 2])
    with pytest.raises(KernelInputError, match="dtype"):
        max_pool2d_backward(torch.rand(1, 2, 4, 4), idx.float(), [1, 2, 8, 8], False, [2, 2], [2, 2])
