"""The 2020 ModelPipeline: micro-batches keep their own neuron state, constant_forward, softbp names."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from softspike import softbp
from softspike.core.errors import StateError
from softspike.pipelines import ModelPipeline, PipelineError

ROOT = Path(__file__).resolve().parents[1]
B = 6
pytestmark = pytest.mark.usefixtures("one_thread")


class Net(softbp.ModelPipeline):
    """2020-style: nn.Sequential blocks with single-step LIF neurons, one per device (all CPU here)."""

    def __init__(self) -> None:
        super().__init__()
        self.append(nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4),
                                  softbp.LIFNode(tau=2.0, v_threshold=0.5)), "cpu")
        self.append(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(2),
                                  softbp.neuron.IFNode(v_threshold=0.5, v_reset=None)), "cpu")
        self.append(nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 5),
                                  softbp.LIFNode(tau=2.0, v_threshold=0.3,
                                                 pulse_soft=softbp.soft_pulse_function.ATan())), "cpu")


def _pair() -> tuple[Net, nn.Sequential]:
    torch.manual_seed(0)
    net = Net().double()
    with torch.no_grad():
        for m in net.modules():  # every layer spikes now and then; eval mode: per-sample layers only
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(2.0)
    net.eval()
    reference = nn.Sequential(*copy.deepcopy(list(net.module_list)))  # the unsplit network
    return net, reference


def _inputs(T: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.rand(B, 2, 8, 8, generator=gen, dtype=torch.float64) * 2 for _ in range(T)]


def _grads(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]  # type: ignore[union-attr]


@pytest.mark.parametrize("split_sizes", [1, 2, 4, B, [1, 3, 2]])
def test_micro_batches_equal_the_whole_batch_step_by_step(split_sizes: int | list[int]) -> None:
    net, reference = _pair()
    xs = _inputs(4)
    weights = torch.rand(4, B, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    loss_net = loss_ref = torch.zeros((), dtype=torch.float64)
    for t, x in enumerate(xs):
        out, want = net(x, split_sizes), reference(x)
        torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
        loss_net, loss_ref = loss_net + (out * weights[t]).sum(), loss_ref + (want * weights[t]).sum()
        # The kept membrane is the whole batch's, as without the pipeline.
        torch.testing.assert_close(net.module_list[0][2].v, reference[0][2].v)
    assert float(loss_ref.detach()) > 0, "the test network must spike"
    loss_net.backward()
    loss_ref.backward()
    for g, h in zip(_grads(net), _grads(reference), strict=True):
        torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-12)
    assert any(float(g.abs().sum()) > 0 for g in _grads(net))


@pytest.mark.parametrize("reduce", [True, False])
def test_constant_forward_equals_T_calls(reduce: bool) -> None:
    net, reference = _pair()
    x, T = _inputs(1)[0], 5
    got = net.constant_forward(x, T, reduce)
    steps = [reference(x) for _ in range(T)]
    want = sum(steps[1:], steps[0]) if reduce else torch.stack(steps)
    assert got.shape == want.shape == ((B, 5) if reduce else (T, B, 5))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    got.pow(2).sum().backward()
    want.pow(2).sum().backward()
    for g, h in zip(_grads(net), _grads(reference), strict=True):
        torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-12)


def test_softbp_neurons_keep_the_2020_defaults() -> None:
    lif = softbp.neuron.LIFNode(tau=2.0)
    assert lif.cfg.reset_grad == "straight_through" and lif.pulse_soft.alpha == 1.0  # type: ignore[attr-defined]
    # One step, written out the 2020 way: spike = σ + (Θ - σ).detach(), V = V_soft + (V_hard - V_soft).detach()
    x = torch.tensor([0.5, 2.5, 3.0], requires_grad=True)
    s1 = lif(x)
    lif(x * 0.5).sum().backward()
    g_ours = x.grad.clone()  # type: ignore[union-attr]
    x.grad = None
    h = x / 2.0
    sig = torch.sigmoid(h - 1.0)
    s_hard = (h >= 1.0).double().to(h.dtype)
    spike = sig + (s_hard - sig).detach()
    v_soft, v_hard = h * (1 - sig), h * (1 - s_hard)
    v = v_soft + (v_hard - v_soft).detach()
    h2 = v + (x * 0.5 - v) / 2.0
    sig2 = torch.sigmoid(h2 - 1.0)
    (sig2 + ((h2 >= 1.0).to(h2.dtype) - sig2).detach()).sum().backward()
    torch.testing.assert_close(s1, spike.detach())
    torch.testing.assert_close(g_ours, x.grad)
    with pytest.raises(TypeError, match="pulse_soft must be a gate"):
        softbp.LIFNode(pulse_soft=torch.sigmoid)  # type: ignore[arg-type]


def test_monitor_records_the_2020_way() -> None:
    node = softbp.IFNode(monitor_state=True)
    node(torch.tensor([0.4, 1.2]))
    node(torch.tensor([0.7, 0.1]))
    assert isinstance(node.monitor, dict)
    assert [v.tolist() for v in node.monitor["v"]] == [pytest.approx([0.4, 1.2]), pytest.approx([1.1, 0.1])]
    assert [s.tolist() for s in node.monitor["s"]] == [[0.0, 1.0], [1.0, 0.0]]
    node.reset()
    assert node.monitor == {"v": [], "s": []}


def test_clear_errors() -> None:
    with pytest.raises(PipelineError, match="no stages"):
        ModelPipeline()(torch.zeros(2, 3), 1)
    net, _ = _pair()
    x = _inputs(1)[0]
    for bad, message in [(0, ">= 1"), ([2, 2], "sum to the batch size 6"), ("2", "int or a list")]:
        with pytest.raises(PipelineError, match=message):
            net(x, bad)  # type: ignore[arg-type]
    net(x, 2)
    with pytest.raises(StateError, match="batch of 6 samples, this input has 3"):
        net(x[:3], 1)
    net.reset()
    net(x[:3], 1)
    with pytest.raises(PipelineError, match="T must be an int >= 1"):
        net.constant_forward(x, 0)
    if not torch.cuda.is_available():
        with pytest.raises(PipelineError, match="cuda:3 is not available here"):
            ModelPipeline().append(nn.ReLU(), "3")


def test_2020_example_runs_and_trains() -> None:
    spec = importlib.util.spec_from_file_location("softbp_2020_cifar10", ROOT / "examples" / "softbp_2020_cifar10.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    for extra in ([], ["--constant-forward"]):
        losses = example.main(["--steps", "6", "--batch-size", "8", "--width", "4", *extra])
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    text = (ROOT / "examples" / "softbp_2020_cifar10.py").read_text()
    assert "import softspike.softbp as softbp" in text and "SpikingFlow" not in text.split('"""')[2]


def test_a_2020_style_custom_neuron() -> None:
    class DoubleIF(softbp.neuron.BaseNode):
        """Written as in 2020: charge self.v, then return self.spiking()."""

        def forward(self, dv: torch.Tensor) -> torch.Tensor:
            self.v += 2 * dv
            return self.spiking()

    node = DoubleIF(v_threshold=1.0, v_reset=0.0)
    x = torch.tensor([0.3, 0.6], requires_grad=True)
    assert node(x).tolist() == [0.0, 1.0]
    assert node(x).tolist() == [1.0, 1.0]  # 0.6 + 0.6 crosses; the reset one charges 1.2 again
    node.reset()
    assert node.v == 0.0
