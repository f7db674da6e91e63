"""Dependencies point down between `softspike.train` and `softspike.pipelines`: a static import graph of
both packages (imports inside functions included) has no cycle, and train never imports pipelines."""

from __future__ import annotations

import ast
from pathlib import Path

import softspike

SRC = Path(softspike.__file__).parent
PACKAGES = ("train", "pipelines")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in sorted((SRC / pkg).rglob("*.py"))]
    modules = {_module_name(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        here = _module_name(path)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
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
