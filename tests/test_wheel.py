"""The wheel as a user gets it: built, installed without the source tree into a fresh environment
(torch seen from the test's own environment, softspike only from the wheel), then the CLI and a
forward pass run from it: the zoo specs, the kernel source and the embedded MNIST travel inside."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # child processes (make test-fast leaves these out)

ROOT = Path(__file__).resolve().parent.parent

FORWARD = """
import pathlib, sys, torch, softspike
from softspike.kernels import native
from softspike.data import mnist_mini_arrays
from softspike.models import build, load_spec

where = pathlib.Path(softspike.__file__).resolve()
assert str(where).startswith(sys.prefix), where
assert len(native.SOURCES) > 1 and all(f.is_file() for f in (*native.SOURCES, *native.HEADERS)), native.SOURCES
x = torch.from_numpy(mnist_mini_arrays()["x_test"][:4]).float().div(255).unsqueeze(1)
net = build(load_spec("mnist_conv")).eval()
with torch.no_grad():
    out = net(x)
assert out.shape == (4, 10) and torch.isfinite(out).all()
print("forward ok", tuple(out.shape), where.parent)
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_the_wheel_installs_and_runs_without_the_source_tree(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    # Build from a copy, so the build leaves nothing in the checkout (and parallel runs do not collide).
    src = tmp_path / "src-copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
         tmp_path, env, timeout=180)
    wheel = next(dist.glob("softspike-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("softspike/models/zoo/mnist_conv.json", "softspike/kernels/csrc/scan.cpp",
                   "softspike/data/mnist_mini.npz", "softspike/data/README.md", "softspike/py.typed"):
        assert needed in names, f"{needed} is not in {wheel.name}"
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert "Requires-Dist: torch<2.15,>=2.7" in requires and not any("==" in line.split(";")[0] for line in requires)

    # A fresh environment that sees this interpreter's packages (torch is not reinstalled) through a
    # plain path entry: the .pth files there, among them an editable softspike's, are not processed.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    own_site = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env).strip()
    Path(own_site, "parent-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp_path, env, timeout=180)

    work = tmp_path / "elsewhere"  # a cwd outside the repository: the source tree is not on the path
    work.mkdir()
    out = _run([str(venv / "bin" / "softspike"), "validate", "mnist_fc"], work, env)
    assert "mnist_fc" in out
    out = _run([str(py), "-c", FORWARD], work, env)
    assert "forward ok (4, 10)" in out and str(venv) in out


def test_a_missing_extra_is_named() -> None:
    import pytest

    from softspike.core.extras import MissingExtraError, require

    with pytest.raises(MissingExtraError, match=r"event data needs the optional package 'no_such_pkg'.*"
                                                r"pip install 'softspike\[data\]'"):
        require("no_such_pkg.sub", "data", "event data")
    assert require("json", "data", "x").__name__ == "json"
