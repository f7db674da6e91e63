"""Layer types as plugins: a fourth plugin kind, with the checks the other three get."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pydantic import Field
from torch import Tensor, nn

from softspike.cli import main
from softspike.core.errors import RegistryError
from softspike.core.params import Params
from softspike.core.registry import get_registry
from softspike.models import BuildContext, LayerSpec, ShapeContext, ShapeError, SpecError, build, check_spec
from softspike.models import json_schema as spec_schema


class GainModule(nn.Module):
    def __init__(self, init: float, learnable: bool) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(init), requires_grad=learnable)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gain


class Gain(LayerSpec):
    """y = g·x with one gain g for the whole layer."""

    init: float = Field(1.0, gt=0)
    """Initial gain (> 0)."""

    def out_shape(self, in_shape: tuple[int, ...], context: ShapeContext) -> tuple[int, ...]:
        if len(in_shape) != 1:
            raise ShapeError(f"gain_test takes flat input, got {list(in_shape)}")
        return in_shape

    def parameter_count(self, in_shape: tuple[int, ...], context: ShapeContext) -> int:
        return 1

    def build(self, in_shape: tuple[int, ...], context: BuildContext) -> nn.Module:
        return GainModule(self.init, True)


class Boom(LayerSpec):
    def out_shape(self, in_shape: tuple[int, ...], context: ShapeContext) -> tuple[int, ...]:
        raise RuntimeError("the plugin's own bug")

    def build(self, in_shape: tuple[int, ...], context: BuildContext) -> nn.Module:
        return nn.Identity()


SPEC = """{"name": "gained", "input_shape": [6], "T": 3, "encoder": {"type": "constant"},
  "layers": [{"type": "linear", "out_features": 4}, {"type": "gain_test", "init": 2.5},
             {"type": "residual", "layers": [{"type": "gain_test"}]},
             {"type": "neuron", "neuron": {"type": "if"}}]}"""


@pytest.fixture
def gain() -> Iterator[None]:
    registry = get_registry()
    registry.layers.add("gain_test", Gain)
    registry.layers.add("boom_test", Boom)
    try:
        yield
    finally:
        registry.layers.remove("gain_test")
        registry.layers.remove("boom_test")


def test_a_layer_type_registered_at_runtime_is_part_of_the_language(gain: None,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    checked = check_spec(json.loads(SPEC), "<test>")
    assert [i.path for i in checked.layers if i.layer.type == "gain_test"] == ["layers[1]", "layers[2].layers[0]"]
    assert checked.num_parameters == 6 * 4 + 4 + 2
    net = build(checked)
    assert sum(p.numel() for p in net.parameters()) == checked.num_parameters
    assert dict(net.layer_paths)["layers[1]"].gain.item() == 2.5
    out = net(torch.rand(2, 6))
    out.sum().backward()
    assert out.shape == (2, 4)
    assert '"gain_test"' in json.dumps(spec_schema())
    bad = json.loads(SPEC)
    bad["layers"][1] = {"type": "gain_test", "init": -1, "inti": 2}
    with pytest.raises(SpecError) as err:
        check_spec(bad, "<test>")
    assert "layers[1].init: must be > 0" in str(err.value)
    assert "layers[1].inti: unknown field; did you mean 'init'?" in str(err.value)
    flat = json.loads(SPEC)
    flat["input_shape"] = [1, 2, 3]
    flat["layers"] = [{"type": "gain_test"}, *flat["layers"]]
    with pytest.raises(SpecError, match=r"layers\[0\]: gain_test takes flat input, got \[1, 2, 3\]"):
        check_spec(flat, "<test>")
    assert main(["plugins", "--json"]) == 0
    listed = {(p["kind"], p["name"]) for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert {("layer", "gain_test"), ("layer", "linear"), ("layer", "residual")} <= listed


def test_a_failing_layer_plugin_is_a_spec_error_not_a_traceback(gain: None, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    spec = json.loads(SPEC)
    spec["layers"][1] = {"type": "boom_test"}
    path = tmp_path / "boom.json"
    path.write_text(json.dumps(spec))
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "layers[1]: the boom_test layer cannot be used: RuntimeError: the plugin's own bug" in err
    assert "Traceback" not in err


def test_layer_registrations_are_checked() -> None:
    layers = get_registry().layers
    with pytest.raises(RegistryError, match=r"layer 'linear' \(from <runtime>\): the name is already registered "
                                            "by softspike"):
        layers.add("linear", Gain)
    with pytest.raises(RegistryError, match="a layer type is a pydantic model class"):
        layers.add("not_a_model", GainModule)

    class NoBuild(Params):
        def out_shape(self, in_shape: tuple[int, ...], context: ShapeContext) -> tuple[int, ...]:
            return in_shape

    with pytest.raises(RegistryError, match="NoBuild must define build"):
        layers.add("no_build", NoBuild)

    class HalfSpec(LayerSpec):  # a LayerSpec subclass inherits only the abstract declarations
        def out_shape(self, in_shape: tuple[int, ...], context: ShapeContext) -> tuple[int, ...]:
            return in_shape

    with pytest.raises(RegistryError, match="HalfSpec must define build"):
        layers.add("half_spec", HalfSpec)
    with pytest.raises(RegistryError, match="its own params model"):
        layers.add("two_models", Gain, params=NoBuild)
    with pytest.raises(RegistryError, match="lowercase snake_case"):
        layers.add("Gain", Gain)


PACKAGE = """
import torch
from torch import nn
from pydantic import Field
import softspike
from softspike.core import Params

class Shift(Params):
    '''y = x + offset. A plain params model with out_shape and build: the language adds the rest.'''
    offset: float = Field(0.5)

    def out_shape(self, in_shape, context):
        return in_shape

    def build(self, in_shape, context):
        offset = self.offset
        class Add(nn.Module):
            def forward(self, x):
                return x + offset
        return Add()

@softspike.hookimpl
def softspike_register(registry):
    registry.layers.add("shift", Shift)
"""

CLASH = """
import softspike
from softspike.models.layers import Linear

@softspike.hookimpl
def softspike_register(registry):
    registry.layers.add("my_linear", Linear)   # fine alone, rolled back with the rest
    registry.layers.add("flatten", Linear)     # taken by softspike itself
"""


def _install(site: Path, dist: str, modules: dict[str, str]) -> None:
    """Install a distribution as pip --target lays it out (modules, and a .dist-info with one entry point
    per module: each a plugin of its own, loaded or skipped alone), without pip's start-up time."""
    info = site / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    points = "".join(f"{name} = {name}.plugin\n" for name in modules)
    (info / "entry_points.txt").write_text(f"[softspike]\n{points}")
    for name, body in modules.items():
        (site / name).mkdir()
        (site / name / "__init__.py").write_text("")
        (site / name / "plugin.py").write_text(textwrap.dedent(body))


@pytest.mark.slow  # a child process
def test_an_installed_package_adds_a_layer_type_and_a_clash_is_skipped(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _install(site, "softspike-layers-demo", {"shift_layer": PACKAGE, "clash_layer": CLASH})
    spec = json.loads(SPEC)
    spec["layers"][1:3] = [{"type": "shift", "offset": 2.0}]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    # softspike.models.layers first: models -> core kernels -> (today) plugins -> models must not be an
    # import cycle, so the built-in plugin imports the layer types only when it registers them.
    code = textwrap.dedent(f"""
        import softspike.models.layers
        import json, torch, softspike
        from softspike.cli import main
        from softspike.models import build, load_spec
        reg = softspike.get_registry()
        net = build(load_spec({str(tmp_path / "spec.json")!r}))
        x = torch.rand(2, 6)
        print(json.dumps({{"errors": {{e.plugin: e.error for e in reg.errors}},
                          "shift": reg.layers.get("shift").distribution, "my_linear": "my_linear" in reg.layers,
                          "rates": net(x).shape[1], "code": main(["validate", {str(tmp_path / "spec.json")!r}])}}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    env.pop("SOFTSPIKE_DISABLE_PLUGIN_AUTOLOAD", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["shift"] == "softspike-layers-demo" and data["rates"] == 4 and data["code"] == 0
    clash = data["errors"]["clash_layer"]
    assert "layer 'flatten' (from softspike-layers-demo)" in clash and "registered by softspike" in clash
    assert not data["my_linear"]

