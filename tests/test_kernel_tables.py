"""The kernels' charge and gate numbering has one source, `softspike.kernels.scan_native` (DYNAMICS, GATES):
the C++ header's enums and dispatch macros and the Triton scan's constants must say the same."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from softspike.kernels import native
from softspike.kernels.scan_native import DYNAMICS, GATES, N_GATES
from softspike.kernels.triton import unavailable

HEADER = native.CSRC / "softspike.h"
TRITON_SCAN = Path(native.__file__).resolve().parent / "triton" / "scan.py"
#: The C++ / Triton spelling of each Python name.
DYN_NAMES = {"if": "IF", "lif": "LIF", "plif": "PLIF"}


def _enum(source: str, name: str) -> dict[str, int]:
    body = re.search(rf"enum {name} \{{([^}}]*)\}};", source)
    assert body is not None, f"enum {name} not found in {HEADER.name}"
    pairs = [item.split("=") for item in body.group(1).replace("\n", " ").split(",") if item.strip()]
    return {k.strip(): int(v) for k, v in pairs}


def _macro_cases(source: str, macro: str) -> list[str]:
    lines = source.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"#define {macro}(")), None)
    assert start is not None, f"{macro} not found in {HEADER.name}"
    body = []
    for line in lines[start:]:
        body.append(line)
        if not line.rstrip().endswith("\\"):
            break
    return re.findall(r"constexpr int NAME = (\w+);", "\n".join(body))


def test_python_tables_are_dense() -> None:
    assert sorted(DYNAMICS.values()) == list(range(len(DYNAMICS)))
    assert sorted(GATES.values()) == list(range(len(GATES))) and N_GATES == len(GATES)


def test_cpp_enums_and_dispatch_match_python() -> None:
    source = HEADER.read_text()
    assert _enum(source, "Dyn") == {DYN_NAMES[k]: v for k, v in DYNAMICS.items()}
    assert _enum(source, "Gate") == {k.upper(): v for k, v in GATES.items()}
    # every entry has its own case; the last one is the default
    assert _macro_cases(source, "SS_DISPATCH_DYN") == [DYN_NAMES[k] for k in sorted(DYNAMICS, key=DYNAMICS.get)]
    assert _macro_cases(source, "SS_DISPATCH_GATE") == [k.upper() for k in sorted(GATES, key=GATES.get)]


def test_triton_scan_compares_only_with_the_named_constants() -> None:
    """No bare number stands for a charge or a gate in the Triton kernels; the names come from the tables."""
    tree = ast.parse(TRITON_SCAN.read_text())
    names = set(DYN_NAMES.values()) | {k.upper() for k in GATES}
    seen: dict[str, set[str]] = {"DYN": set(), "GATE": set(), "dyn": set(), "gate": set()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id in seen:
            for right in node.comparators:
                assert isinstance(right, ast.Name) and right.id in names, (
                    f"{TRITON_SCAN.name}:{node.lineno}: {node.left.id} compared with {ast.unparse(right)}")
                seen[node.left.id].add(right.id)
    assert seen["DYN"] == {"IF", "LIF", "PLIF"}  # PLIF in the k loads
    # the gate chains name every gate but the last, which is their `else`
    last = max(GATES, key=GATES.get)
    assert seen["GATE"] == {k.upper() for k in GATES} - {last.upper()}
    # the constants are built from the tables, not written again
    assigned = [n for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Tuple)]
    text = " ".join(ast.unparse(n.value) for n in assigned)
    assert "DYNAMICS[n]" in text and "GATES[n]" in text and not re.search(r"range\(|= \d", text)


@pytest.mark.skipif(unavailable() is not None, reason=f"triton does not import here: {unavailable()}")
def test_triton_constants_equal_the_tables() -> None:
    from softspike.kernels.triton import scan

    for name, value in DYNAMICS.items():
        assert getattr(scan, DYN_NAMES[name]) == value
    for name, value in GATES.items():
        assert getattr(scan, name.upper()) == value
