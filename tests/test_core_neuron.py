"""Neuron semantics: the reset equations and their gradients, state handling, the 2020 API."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import softspike
from softspike import encoding, neuron, surrogate
from softspike.core.errors import StateError
from softspike.core.surrogate import Surrogate

X = torch.tensor([1.5, 0.5, 1.0, -0.3], dtype=torch.float64)


def _one_step(v_reset: float | None, **kw: object) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IF from rest, one step: H = X. Returns (S, V, dV/dX)."""
    node = neuron.IFNode(v_threshold=1.0, v_reset=v_reset, surrogate=surrogate.Sigmoid(alpha=4.0), **kw)
    x = X.clone().requires_grad_(True)
    s = node(x)
    v = node.v
    assert isinstance(v, torch.Tensor)
    (g,) = torch.autograd.grad(v.sum(), x)
    return s.detach(), v.detach(), g


def _sig(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.sigmoid(4.0 * x)
    return p, 4.0 * p * (1 - p)


def test_hard_reset_follows_the_equation_and_the_surrogate() -> None:
    s, v, g = _one_step(0.0)
    assert s.tolist() == [1.0, 0.0, 1.0, 0.0]  # Θ(0) = 1 at exactly the threshold
    assert torch.equal(v, X * (1 - s))
    _, d = _sig(X - 1.0)
    assert torch.allclose(g, (1 - s) + (0.0 - X) * d)


def test_soft_reset_subtracts_the_threshold() -> None:
    s, v, g = _one_step(None)
    assert torch.equal(v, X - s)
    _, d = _sig(X - 1.0)
    assert torch.allclose(g, 1 - d)


def test_detach_reset_cuts_the_reset_gradient() -> None:
    s, v, g = _one_step(0.0, detach_reset=True)
    assert torch.equal(v, X * (1 - s))
    assert torch.equal(g, 1 - s)
    _, _, g_soft = _one_step(None, detach_reset=True)
    assert torch.equal(g_soft, torch.ones_like(X))


def test_straight_through_reset_is_the_2020_form() -> None:
    s, v, g = _one_step(-0.2, reset_grad="straight_through")
    h = X - 0.2  # IF from rest at V_reset
    assert torch.equal(v, h * (1 - s) - 0.2 * s)  # the value of the hard reset
    p, d = _sig(h - 1.0)
    assert torch.allclose(g, (1 - p) + (-0.2 - h) * d)  # the gradient of H(1 - σ) + V_reset σ


def _softbp_2020_lif(x_seq: torch.Tensor, tau: float, v_th: float, v_reset: float) -> torch.Tensor:
    """The 2020 SpikingFlow softbp LIF, written out: both S and V as soft + (hard - soft).detach()."""
    v: torch.Tensor | float = v_reset
    out = []
    for x in x_seq:
        h = v + (x - (v - v_reset)) / tau
        hard_s = (h >= v_th).to(x.dtype)
        soft_s = torch.sigmoid(4.0 * (h - v_th))
        hard_v = v_reset * hard_s + h * (1 - hard_s)
        soft_v = v_reset * soft_s + h * (1 - soft_s)
        v = soft_v + (hard_v - soft_v).detach()
        out.append(soft_s + (hard_s - soft_s).detach())
    return torch.stack(out)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_straight_through_matches_the_2020_network_through_time(step_mode: str) -> None:
    torch.manual_seed(0)
    x_seq = torch.rand(12, 3, 5, dtype=torch.float64) * 3
    w = torch.randn(12, 3, 5, dtype=torch.float64)
    x1 = x_seq.clone().requires_grad_(True)
    ref = _softbp_2020_lif(x1, tau=2.0, v_th=1.0, v_reset=0.0)
    (g_ref,) = torch.autograd.grad((ref * w).sum(), x1)
    node = neuron.LIFNode(tau=2.0, reset_grad="straight_through", step_mode=step_mode)
    x2 = x_seq.clone().requires_grad_(True)
    out = node(x2) if step_mode == "m" else torch.stack([node(x) for x in x2])
    (g,) = torch.autograd.grad((out * w).sum(), x2)
    assert torch.equal(out.detach(), ref.detach())
    assert torch.allclose(g, g_ref, rtol=1e-12, atol=1e-12)


def test_lif_charge_equation() -> None:
    node = neuron.LIFNode(tau=4.0, v_reset=0.5, v_threshold=10.0)
    node(torch.tensor([2.0]))
    assert torch.allclose(torch.as_tensor(node.v), torch.tensor([0.5 + (2.0 - 0.0) / 4.0]))


def test_single_step_keeps_state_and_reset_clears_it() -> None:
    node = neuron.IFNode()
    assert node(torch.tensor([0.6])).item() == 0.0
    assert node(torch.tensor([0.6])).item() == 1.0  # 1.2 crosses
    node.reset()
    assert node.v == 0.0
    assert node(torch.tensor([0.6])).item() == 0.0


def test_stale_state_of_another_shape_is_reported_not_broadcast() -> None:
    node = neuron.LIFNode(tau=2.0)
    node(torch.rand(4, 3))
    with pytest.raises(StateError, match=r"reset\(\)"):
        node(torch.rand(1, 3))
    with pytest.raises(StateError, match=r"reset\(\)"):
        node(torch.rand(8, 3))
    softspike.reset(node)
    assert node(torch.rand(8, 3)).shape == (8, 3)


def test_bad_inputs_get_clear_errors() -> None:
    node = neuron.LIFNode()
    with pytest.raises(TypeError, match=r"x\.float\(\)"):
        node(torch.ones(3, dtype=torch.long))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        node([1.0, 2.0])  # type: ignore[arg-type]
    node.step_mode = "m"
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        node(torch.ones(5))
    with pytest.raises(ValueError, match="step_mode"):
        neuron.LIFNode(step_mode="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau"):
        neuron.LIFNode(tau=0.0)
    with pytest.raises(ValueError, match="alpha"):
        surrogate.Sigmoid(alpha=-1.0)
    with pytest.raises(ValueError, match="v_threshold"):
        neuron.IFNode(v_threshold=float("nan"))


def test_multi_step_starts_from_rest_every_call() -> None:
    node = neuron.LIFNode(tau=2.0, step_mode="m")
    x = torch.rand(6, 2, 3) * 3
    assert torch.equal(node(x), node(x))


def test_neurons_drop_into_sequential_and_train() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), neuron.LIFNode(tau=2.0, v_threshold=0.5),
                        nn.Linear(16, 2), neuron.LIFNode(tau=2.0, v_threshold=0.5))
    opt = torch.optim.Adam(net.parameters(), lr=5e-2)
    enc = encoding.PoissonEncoder()
    x, y = torch.rand(16, 6), torch.randint(0, 2, (16,))
    losses = []
    for _ in range(20):
        rate = sum(net(enc(x) * 4) for _ in range(8)) / 8  # type: ignore[misc]
        loss = nn.functional.cross_entropy(rate, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        softspike.reset(net)
        losses.append(loss.item())
    assert all(p.grad is not None for p in net.parameters())
    assert min(losses[-5:]) < losses[0]


def test_set_step_mode_switches_a_whole_network() -> None:
    net = nn.Sequential(neuron.IFNode(), nn.Identity(), neuron.LIFNode())
    softspike.set_step_mode(net, "m")
    assert all(m.step_mode == "m" for m in net if isinstance(m, softspike.neuron.Neuron))
    assert net(torch.ones(3, 2, 4)).shape == (3, 2, 4)


def test_parametric_lif_learns_tau() -> None:
    node = neuron.ParametricLIFNode(init_tau=2.0, step_mode="m")
    assert node.dynamics.tau == pytest.approx(2.0)
    node(torch.rand(5, 2, 3) * 3).sum().backward()
    assert node.dynamics.w.grad is not None and node.dynamics.w.grad.abs() > 0


def test_alif_threshold_rises_with_spikes() -> None:
    plain = neuron.LIFNode(tau=2.0, step_mode="m")
    adaptive = neuron.ALIFNode(tau=2.0, tau_adapt=100.0, beta=0.5, step_mode="m")
    x = torch.full((40, 1, 1), 1.5)
    assert adaptive(x).sum() < plain(x).sum()


def test_a_user_surrogate_needs_only_two_functions() -> None:
    class Gauss(Surrogate):
        def primitive(self, x: torch.Tensor) -> torch.Tensor:
            return 0.5 * (1 + torch.erf(x))

        def derivative(self, x: torch.Tensor) -> torch.Tensor:
            return torch.exp(-x * x) / torch.pi**0.5

    node = neuron.IFNode(surrogate=Gauss())
    x = torch.tensor([0.5, 1.5], requires_grad=True)
    node(x).sum().backward()
    assert x.grad is not None
    assert torch.allclose(x.grad, torch.exp(-(torch.tensor([0.5, 1.5]) - 1) ** 2) / torch.pi**0.5)

    class Half(Surrogate):
        def primitive(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(TypeError, match="derivative"):
        Half()  # type: ignore[abstract]


def test_surrogate_by_name_and_repr() -> None:
    node = neuron.LIFNode(tau=2.0, surrogate="atan", v_reset=None, detach_reset=True)
    text = repr(node)
    assert "ATan(alpha=2.0)" in text and "soft" in text and "detach_reset=True" in text and "tau=2.0" in text


def test_the_time_loop_never_touches_the_registry_or_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    import pluggy
    import pydantic

    import softspike.core.registry as registry_module

    nodes = [softspike.get_registry().neurons.create(n, surrogate="atan", step_mode=m)
             for n in softspike.get_registry().neurons.names() for m in ("s", "m")]

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("called in the time loop")

    monkeypatch.setattr(pydantic.BaseModel, "__init__", forbidden)
    monkeypatch.setattr(pydantic.BaseModel, "model_validate", forbidden)
    monkeypatch.setattr(pluggy.PluginManager, "subset_hook_caller", forbidden)
    monkeypatch.setattr(registry_module, "get_registry", forbidden)
    x = (torch.rand(4, 2, 3) * 3).requires_grad_(True)
    for node in nodes:
        out = node(x) if node.step_mode == "m" else torch.stack([node(xt) for xt in x])
        out.sum().backward()
