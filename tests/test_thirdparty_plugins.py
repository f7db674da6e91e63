"""Real third-party packages, pip-installed into a temporary directory, found through entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # child processes (make test-fast leaves these out)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "softspike-qif"
IZHIKEVICH = ROOT / "examples" / "softspike-izhikevich"


def _pip_install(src: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
         "--target", str(target), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )


def _path(site: Path) -> str:
    """The temporary site first, then whatever this test process was given (a source checkout)."""
    return os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)


def _run(code: str, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": _path(site), **env}
    environ.pop("SOFTSPIKE_DISABLE_PLUGIN_AUTOLOAD", None)
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)


def _broken_package(root: Path, dist: str, module: str, body: str) -> Path:
    pkg = root / dist
    (pkg / module).mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{dist}"
        version = "0.0.1"
        [project.entry-points.softspike]
        {module} = "{module}.plugin"
        [tool.setuptools]
        packages = ["{module}"]
    """))
    (pkg / module / "__init__.py").write_text("")
    (pkg / module / "plugin.py").write_text(textwrap.dedent(body))
    return pkg


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _pip_install(EXAMPLE, target)
    _pip_install(IZHIKEVICH, target)
    return target


def test_a_third_party_neuron_and_surrogate_work_through_the_registry(site: Path) -> None:
    code = textwrap.dedent("""
        import json, torch, softspike
        from softspike.testing import check_plugin
        reg = softspike.get_registry()
        node = reg.neurons.create("qif", tau=3.0, surrogate="gauss", step_mode="m")
        x = torch.rand(6, 2, 4, requires_grad=True) * 2
        s = node(x)
        s.sum().backward()
        check_plugin("neuron", "qif", max_examples=10, train=False)  # the training property: izhikevich's test
        check_plugin("surrogate", "gauss", max_examples=10)
        print(json.dumps({"dist": reg.neurons.get("qif").distribution, "gate": reg.surrogates.get("gauss").distribution,
                          "binary": bool(((s == 0) | (s == 1)).all()), "errors": len(reg.errors)}))
    """)
    out = _run(code, site)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"dist": "softspike-qif", "gate": "softspike-qif", "binary": True, "errors": 0}
    listing = _run("from softspike.cli import main; main(['plugins', '--json'])", site)
    names = {(p["kind"], p["name"], p["distribution"]) for p in json.loads(listing.stdout)["plugins"]}
    assert ("neuron", "qif", "softspike-qif") in names and ("surrogate", "gauss", "softspike-qif") in names
    off = _run("import softspike; print('qif' in softspike.get_registry().neurons)", site,
               SOFTSPIKE_DISABLE_PLUGIN_AUTOLOAD="1")
    assert off.stdout.strip() == "False"


def test_broken_plugins_are_reported_and_skipped(tmp_path: Path, site: Path) -> None:
    _pip_install(_broken_package(tmp_path / "src", "softspike-broken-import", "broken_import",
                                 "import not_a_module_anywhere\n"), site)
    _pip_install(_broken_package(tmp_path / "src", "softspike-clash", "clash", """
        import softspike
        from softspike.plugins.neurons import LIF
        from softspike.plugins.surrogates import Sigmoid
        @softspike.hookimpl
        def softspike_register(registry):
            registry.surrogates.add("my_sigmoid", Sigmoid)  # fine on its own, rolled back with the rest
            registry.neurons.add("lif", LIF)                # taken by softspike itself
    """), site)
    _pip_install(_broken_package(tmp_path / "src", "softspike-raises", "raises", """
        import softspike
        @softspike.hookimpl
        def softspike_register(registry):
            raise RuntimeError("boom")
    """), site)
    code = textwrap.dedent("""
        import json, softspike
        reg = softspike.get_registry()
        print(json.dumps({"errors": [vars(e) for e in reg.errors], "qif": "qif" in reg.neurons,
                          "my_sigmoid": "my_sigmoid" in reg.surrogates, "lif": reg.neurons.get("lif").distribution}))
    """)
    out = _run(code, site)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    errors = {e["distribution"]: e["error"] for e in data["errors"]}
    assert "No module named 'not_a_module_anywhere'" in errors["softspike-broken-import"]
    clash = errors["softspike-clash"]
    assert "from softspike-clash" in clash and "registered by softspike" in clash
    assert "boom" in errors["softspike-raises"]
    assert data["qif"] and not data["my_sigmoid"] and data["lif"] == "softspike"
    listing = _run("from softspike.cli import main; main(['plugins'])", site)
    assert listing.returncode == 0 and "skipped plugin 'broken_import' from softspike-broken-import" in listing.stderr


def test_izhikevich_passes_the_conformance_suite_and_trains_from_a_json_spec(site: Path, tmp_path: Path) -> None:
    check = textwrap.dedent("""
        import json, torch, softspike
        from softspike.testing import check_plugin
        reg = softspike.get_registry()
        check_plugin("neuron", "izhikevich", max_examples=5)  # with the training property (compiled path)
        try:
            reg.neurons.create("izhikevich", c=-40.0, v_peak=-50.0)
            bad = ""
        except softspike.core.ParameterError as err:
            bad = str(err)
        try:
            reg.neurons.create("izhikevich", v_reset=None)
            soft = ""
        except softspike.core.ParameterError as err:
            soft = str(err)
        print(json.dumps({"dist": reg.neurons.get("izhikevich").distribution, "bad": bad, "soft": soft}))
    """)
    out = _run(check, site)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["dist"] == "softspike-izhikevich"
    assert "v_peak" in got["bad"] and "above the reset c" in got["bad"]
    assert "needs a hard reset" in got["soft"]

    # Train a small net from a JSON spec with the command line, on separable synthetic data.
    gen = np.random.default_rng(0)
    y = gen.integers(0, 4, 256)
    x = (gen.random((256, 8, 8)) < 0.1).astype(np.float32)
    for k in range(4):
        x[y == k, 2 * k:2 * k + 2, :] = 1.0
    np.savez(tmp_path / "data.npz", x_train=x[:192], y_train=y[:192], x_test=x[192:], y_test=y[192:])
    spec = {
        "name": "izhikevich_small", "input_shape": [1, 8, 8], "T": 8, "encoder": {"type": "constant"},
        "layers": [
            {"type": "flatten"},
            {"type": "linear", "out_features": 32},
            {"type": "neuron", "neuron": {"type": "izhikevich", "dt": 1.0, "gain": 40.0}},
            {"type": "linear", "out_features": 4},
            {"type": "neuron", "neuron": {"type": "izhikevich", "a": 0.1, "d": 2.0, "dt": 1.0, "gain": 40.0}},
        ],
        "readout": {"type": "rate", "scale": 8.0},
    }
    (tmp_path / "izh.json").write_text(json.dumps(spec))
    train = subprocess.run(
        [sys.executable, "-m", "softspike", "train", str(tmp_path / "izh.json"), "--dataset",
         f"npz:{tmp_path / 'data.npz'}", "--epochs", "2", "--batch-size", "32", "--lr", "0.01", "--quiet",
         "--logdir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != "SOFTSPIKE_DISABLE_PLUGIN_AUTOLOAD"},
             "PYTHONPATH": _path(site)},
    )
    assert train.returncode == 0, train.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert len(epochs) == 2
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"] < 1.386  # below ln 4: the output layer fires
    assert epochs[-1]["train_accuracy"] > 0.4
