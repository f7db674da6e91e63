"""The dynamics contract: state-general steps, paths chosen by declaration, settings kept once."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import Tensor

import softspike
from softspike.core.dynamics import Dynamics, State
from softspike.core.neuron import Neuron
from softspike.core.registry import backend_info, load_registry
from softspike.kernels import native, scan_compiled
from softspike.plugins import surrogates as sg
from softspike.plugins.neurons import LIF, CubaLIF
from softspike.testing import check_fused_matches_reference

CORE = Path(softspike.__file__).resolve().parent / "core"
NATIVE = native.load() is not None

# The third-party LIF that `make bench` times against the built-in: checked here to take its path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from plugin_cases import PluginLIF  # noqa: E402


class Resonator(Dynamics):
    """Resonate-and-fire with a learnable frequency: a third state variable w and a parameter."""

    state_names = ("w",)

    def __init__(self) -> None:
        super().__init__()
        self.omega = torch.nn.Parameter(torch.tensor(0.3))

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v, w = state["v"], state["w"]
        return v + 0.2 * (x - v) - self.omega * w, {**state, "w": w + self.omega * v}


class LeakyLIF(LIF):
    """A subclass that changes the charge but not the declaration: must not run LIF's kernel."""

    def charge(self, x: Tensor, state: State, v_rest: float) -> tuple[Tensor, State]:
        v = state["v"]
        return 0.9 * v + x, state


class QuietLIF(LIF):
    """A subclass that keeps the step: inherits the kernel."""

    def extra_repr(self) -> str:
        return "quiet"


@pytest.mark.slow  # a child process
def test_core_never_imports_plugins() -> None:
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = [n for n in names if n.startswith("softspike.plugins")]
            assert not bad, f"{path.relative_to(CORE.parent)} imports {bad}: core must not depend on plugins"
    # And at run time: core works with the plugins package made unimportable (the top-level package,
    # which re-exports the 2020 API from plugins, is replaced by a bare namespace).
    code = textwrap.dedent(f"""
        import sys, types, torch
        pkg = types.ModuleType("softspike")
        pkg.__path__ = [{str(CORE.parent)!r}]
        sys.modules["softspike"] = pkg
        sys.modules["softspike.plugins"] = None
        from softspike.core import Dynamics, Neuron, Surrogate
        from softspike.core.dynamics import LinearCharge
        class Gate(Surrogate):
            def primitive(self, x): return torch.sigmoid(x)
            def derivative(self, x): return torch.sigmoid(x) * (1 - torch.sigmoid(x))
        class Leaky(Dynamics):
            def charge(self, x, state, v_rest): return state["v"] + (x - state["v"]) / 2.0, state
            def linear_charge(self): return LinearCharge(tau=2.0)
        from softspike.core.backends import Backend, BackendError
        from softspike.core.step import multistep_reference
        n = Neuron(Leaky(), surrogate=Gate(), step_mode="m")
        x = torch.rand(4, 2, 3, requires_grad=True) * 3
        try:  # the backends are plugins too: without them, a clear error
            n(x)
        except BackendError as err:
            print(err)
        from softspike.core.registry import get_registry
        get_registry().backends.add(Backend("reference", 0, lambda d, c, x: None, multistep_reference, "all"))
        s = n(x)
        s.sum().backward()
        assert "softspike.plugins.neurons" not in sys.modules
        assert not [m for m in sys.modules if m.startswith("softspike.kernels")]
        print(n.backend_used)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "no backend is registered" in lines[0] and lines[-1] == "reference"


def test_paths_follow_the_declaration_not_the_class() -> None:
    x = torch.rand(6, 3, 50) * 2
    expect = "native" if NATIVE else "torch"
    for dyn in (PluginLIF(2.0), QuietLIF(2.0)):
        neuron = Neuron(dyn, step_mode="m")
        assert check_fused_matches_reference(neuron, x) == expect
    leaky = Neuron(LeakyLIF(2.0), step_mode="m")
    assert leaky.dynamics.linear_charge() is None
    assert check_fused_matches_reference(leaky, x) == "reference"  # small layer: no compile
    # A gate subclass that redefines σ' loses its parent's kernel.

    class Wider(sg.Sigmoid):
        def derivative(self, x: Tensor) -> Tensor:
            return super().derivative(x / 2) / 2

        def primitive(self, x: Tensor) -> Tensor:
            return super().primitive(x / 2)

    assert sg.Sigmoid().kernel() is not None and Wider().kernel() is None
    assert check_fused_matches_reference(Neuron(LIF(2.0), surrogate=Wider(), step_mode="m"), x) == "torch"


def test_plugin_lif_spikes_equal_the_builtin() -> None:
    x = torch.randn(10, 4, 300) + 0.6
    a, b = Neuron(LIF(3.0), step_mode="m"), Neuron(PluginLIF(3.0), step_mode="m")
    assert torch.equal(a(x), b(x)) and a.backend_used == b.backend_used


def test_cuba_lif_follows_norse_discretisation() -> None:
    x = torch.tensor([[2.0], [0.0], [0.5], [0.0], [0.0]])
    neuron = softspike.get_registry().neurons.create("cuba_lif", tau_mem=2.0, tau_syn=4.0, step_mode="s")
    v, i, spikes = 0.0, 0.0, []
    for t in range(5):
        j = i + float(x[t, 0])  # the input jumps the current first
        h = v + (0.0 - v + j) / 2.0
        s = float(h >= 1.0)
        spikes.append(s)
        v = h * (1 - s)
        i = j - j / 4.0  # then the current decays
        assert float(neuron(x[t])[0]) == s
        assert torch.allclose(torch.as_tensor(neuron.v), torch.tensor([v]))
        assert torch.allclose(neuron.state["i"], torch.tensor([i]))
    assert spikes == [1.0, 0.0, 1.0, 0.0, 0.0]  # X(0) reaches the membrane at step 0, as in Norse


def test_compiled_generic_path_matches_the_reference() -> None:
    if not scan_compiled.status()[0]:  # only where no C++ compiler exists for inductor (CI has g++: it runs)
        pytest.skip(f"torch.compile cannot run here: {scan_compiled.status()[1]}")  # no g++; CI runs it
    torch.manual_seed(0)
    neuron = Neuron(CubaLIF(2.0, 3.0), step_mode="m", surrogate=sg.ATan())
    x = torch.rand(8, 3, 64) * 1.5
    assert check_fused_matches_reference(neuron, x, backend="compiled") == "compiled"
    info = {b["name"]: b for b in backend_info()["backends"]}["compiled"]
    assert info["available"] and scan_compiled.status() == (True, "compiled")
    # A dynamics with a learnable parameter runs the compiled step under autograd: its gradient too.
    torch.manual_seed(1)
    learn = Neuron(Resonator(), step_mode="m", backend="compiled")
    ref = Neuron(Resonator(), step_mode="m", backend="reference")
    ref.load_state_dict(learn.state_dict())
    x = torch.rand(6, 2, 40) * 2
    grads = []
    for n in (learn, ref):
        xs = x.clone().requires_grad_(True)
        out = n(xs)
        (gx, gw) = torch.autograd.grad((out * torch.linspace(0.5, 1.5, out.numel()).view_as(out)).sum(),
                                       [xs, n.dynamics.omega])
        grads.append((out.detach(), gx, gw))
    assert learn.backend_used == "compiled"
    assert torch.equal(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    torch.testing.assert_close(grads[0][2], grads[1][2])


def test_compiled_path_falls_back_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("no compiler in this test")

    monkeypatch.setattr(scan_compiled, "_step", broken)
    monkeypatch.setattr(scan_compiled, "_scan_steps", (broken, broken))
    monkeypatch.setattr(scan_compiled, "_status", "not tried yet")
    monkeypatch.setattr(scan_compiled, "_failed", False)
    neuron = Neuron(CubaLIF(), step_mode="m")
    x = torch.rand(3, 2, 5000)
    ref = Neuron(CubaLIF(), step_mode="m", backend="reference")(x)
    assert torch.equal(neuron(x), ref)
    ok, why = scan_compiled.status()
    assert not ok and "no compiler in this test" in why
    assert "no compiler in this test" in {b["name"]: b for b in backend_info()["backends"]}["compiled"]["status"]
    chosen, skipped = softspike.get_registry().backends.select(neuron.dynamics, neuron.cfg, x)
    assert chosen.name == "reference" and "no compiler in this test" in dict(skipped)["compiled"]


def test_assigning_the_surrogate_changes_the_gradient() -> None:
    x = torch.full((1, 3), 0.8)
    for mode, backend in (("s", "auto"), ("m", "auto"), ("m", "torch"), ("m", "reference")):
        neuron = Neuron(LIF(2.0), surrogate=sg.Sigmoid(4.0), step_mode=mode, backend=backend)  # type: ignore[arg-type]
        grads = []
        for gate in (sg.Sigmoid(4.0), sg.ATan(9.0)):
            neuron.surrogate = gate
            assert neuron.cfg.surrogate is gate
            xs = x.clone().requires_grad_(True)
            neuron.reset()
            neuron(xs if mode == "s" else xs.unsqueeze(0)).sum().backward()
            assert xs.grad is not None
            grads.append(xs.grad)
        assert not torch.equal(grads[0], grads[1]), (mode, backend)
    with pytest.raises(TypeError, match="surrogate must be"):
        neuron.surrogate = "atan"  # type: ignore[assignment]


def test_a_custom_registry_never_reaches_the_global_one(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = load_registry(autoload=False)

    def forbidden() -> None:
        raise AssertionError("the global registry was used")

    monkeypatch.setattr("softspike.core.registry.get_registry", forbidden)
    node = reg.neurons.create("lif", tau=2.0)
    assert type(node.surrogate).__name__ == "Sigmoid"
    assert type(reg.neurons.create("if", surrogate="atan").surrogate).__name__ == "ATan"


def test_parameters_are_validated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import softspike.plugins.neurons as builtin

    calls: list[str] = []
    real = builtin.validate_params
    monkeypatch.setattr(builtin, "validate_params", lambda *a: calls.append(a[1]) or real(*a))
    reg = softspike.get_registry()
    dyn = reg.neurons.create_dynamics("cuba_lif", tau_mem=3.0)
    assert calls == [] and dyn.tau_mem == 3.0 and dyn.tau_syn == 5.0
    CubaLIF(tau_mem=3.0)
    assert calls == ["CubaLIF"]


def test_a_0x_dynamics_is_adapted_with_the_migration_in_the_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"v = state\['v'\]"):

        class Old(Dynamics):
            def charge(self, v, x, state, v_rest):  # type: ignore[no-untyped-def, override]
                return v + x

    with pytest.warns(DeprecationWarning, match="after_fire"):

        class OldAdaptive(Dynamics):
            state_names = ("a",)

            def charge(self, x, state, v_rest):  # type: ignore[no-untyped-def, override]
                return state["v"] + x, state

            def threshold(self, v_threshold, state):  # type: ignore[no-untyped-def, override]
                return v_threshold + state["a"]

            def update(self, state, spike):  # type: ignore[no-untyped-def]
                return {"a": 0.5 * state["a"] + spike}

    n = Neuron(OldAdaptive(), step_mode="s")
    n(torch.tensor([2.0]))
    assert torch.equal(n.state["a"], torch.tensor([1.0]))
    x = torch.rand(5, 2, 3) * 2
    ref = Neuron(Old(), step_mode="m", backend="reference")(x)
    v, out = torch.zeros(2, 3), []
    for xt in x:
        h = v + xt
        s = (h >= 1.0).float()
        out.append(s)
        v = h * (1 - s)
    assert torch.equal(ref, torch.stack(out))


def test_functional_transforms_run_through_the_tensor_op_path() -> None:
    neuron = Neuron(LIF(2.0), step_mode="m", backend="torch")
    x = torch.rand(4, 2, 3) * 2

    def loss(x_: Tensor) -> Tensor:
        return (neuron(x_) * torch.arange(1.0, 4.0)).sum()

    got = torch.func.grad(loss)(x)
    xr = x.clone().requires_grad_(True)
    neuron.backend = "reference"
    loss(xr).backward()
    assert xr.grad is not None
    torch.testing.assert_close(got, xr.grad)


def test_check_command_reports_each_plugin_and_fails_on_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from softspike.cli import main

    (tmp_path / "my_gates.py").write_text(textwrap.dedent("""
        import torch, softspike
        from softspike.core import Dynamics, Params, Surrogate

        class Wrong(Surrogate):
            Params = Params
            def primitive(self, x): return torch.sigmoid(x)
            def derivative(self, x): return torch.ones_like(x)  # not the derivative of primitive

        class Half(Dynamics):
            Params = Params
            def charge(self, x, state, v_rest): return 0.5 * state["v"] + x, state

        @softspike.hookimpl
        def softspike_register(registry):
            registry.surrogates.add("wrong_gate", Wrong)
            registry.neurons.add("half", Half)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "my_gates", "--max-examples", "3", "--no-train"]) == 1
    out = capsys.readouterr().out
    assert "ok   neuron 'half'" in out
    assert "multi-step path: compiled (passed over native" in out or "multi-step path: reference" in out
    assert "FAIL surrogate 'wrong_gate'" in out and "derivative(x) differs" in out
    assert "1 of 2 plugins of my_gates pass" in out
    assert main(["check", "no_such_plugin_anywhere"]) == 1
    assert "neither an installed distribution nor an importable module" in capsys.readouterr().err
