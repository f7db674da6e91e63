"""Dependencies point down. Between `softspike.train` and `softspike.pipelines`: a static import graph of
both packages (imports inside functions included) has no cycle, and train never imports pipelines.
In `softspike.core`: each module imported alone (a fresh `sys.modules`, one child process for all)
loads nothing of softspike outside core (no kernel, no plugin), and core's import-time graph has no
cycle; the one late lookup back into the registry (a neuron built by hand) is named below."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

import softspike

SRC = Path(softspike.__file__).parent
PACKAGES = ("train", "pipelines")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.Module, import_time: bool) -> list[ast.AST]:
    """The nodes that can run: all but `if TYPE_CHECKING:` blocks; with `import_time`, not in functions either."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
        elif not (import_time and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
            todo.extend(ast.iter_child_nodes(node))
    return out


def _graph(packages: Sequence[str] = PACKAGES, import_time: bool | None = None) -> dict[str, set[str]]:
    """module -> the modules of `packages` it imports: every import statement (None), those that can run
    (False: not under TYPE_CHECKING), or those that run when the module is imported (True)."""
    files = [p for pkg in packages for p in sorted((SRC / pkg).rglob("*.py"))]
    modules = {_module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        here = _module_name(path)
        targets: set[str] = set()
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree) if import_time is None else _runtime_nodes(tree, import_time):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[here] = {t for t in targets if t in modules and t != here}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_train_and_pipelines() -> None:
    graph = _graph()
    assert "softspike.pipelines.running.worker" in graph and "softspike.train.loop" in graph
    # Imports inside train itself are train's own affair (data.py and tonic_data.py import each other
    # lazily); every cycle through pipelines, or across the two packages, is refused.
    train = {m for m in graph if m.startswith("softspike.train")}
    cycle = _cycle({m: targets - train if m in train else targets for m, targets in graph.items()})
    assert cycle is None, " -> ".join(cycle or [])


def test_train_never_imports_pipelines_and_pipelines_never_the_training_loop() -> None:
    graph = _graph()
    for module, targets in graph.items():
        if module.startswith("softspike.train"):
            assert not {t for t in targets if t.startswith("softspike.pipelines")}, module
        else:
            assert not targets & {"softspike.train.loop", "softspike.train.trained", "softspike.train"}, module


CORE_ALONE = """
import importlib, json, sys
import torch  # noqa: F401  (third-party modules stay loaded: only softspike's are cleared)
found = {}
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m == "softspike" or m.startswith("softspike.")]:
        del sys.modules[m]
    importlib.import_module(name)
    found[name] = sorted(m for m in sys.modules if m.startswith("softspike.") and not m.startswith("softspike.core"))
print(json.dumps(found))
"""

#: The late (inside a function) imports that point back up inside core: a neuron built by hand, not
#: through a registry, looks up the process-wide one for its default gate and its backends.
LATE_BACK_EDGES = {("softspike.core.neuron", "softspike.core.registry")}


@pytest.mark.slow  # a child Python (make test-fast leaves it out)
def test_each_core_module_alone_loads_no_kernel_and_no_plugin() -> None:
    modules = sorted(m for m in _graph(("core",)) if m != "softspike.core")
    assert {"softspike.core.neuron", "softspike.core.backends", "softspike.core.step"} <= set(modules)
    env = {**os.environ, "PYTHONPATH": str(SRC.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CORE_ALONE, "softspike.core", *modules], capture_output=True,
                          text=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(found) == {"softspike.core", *modules}
    assert {name: above for name, above in found.items() if above} == {}


def test_core_has_no_import_cycle() -> None:
    at_import = _graph(("core",), import_time=True)
    assert _cycle(at_import) is None, " -> ".join(_cycle(at_import) or [])
    # The package's __init__ gathers its modules: leave it out of the late-import check.
    late = {m: t - {"softspike.core"} for m, t in _graph(("core",), import_time=False).items() if m != "softspike.core"}
    cycle = _cycle({m: t - {b for a, b in LATE_BACK_EDGES if a == m} for m, t in late.items()})
    assert cycle is None, " -> ".join(cycle or [])

