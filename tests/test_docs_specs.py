"""The example in docs/specs.md validates, builds and runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from softspike.models import build, check_spec, count_parameters

DOC = Path(__file__).resolve().parent.parent / "docs" / "specs.md"


def test_the_documented_example_runs() -> None:
    block = re.search(r"```json\n(\{\n  \"\$schema\".*?)```", DOC.read_text(), re.S)
    assert block, "docs/specs.md lost its example"
    checked = check_spec(json.loads(block.group(1)), "docs/specs.md")
    net = build(checked)
    out = net(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 10)
    out.sum().backward()
    summary = re.search(r"(\d+) layers, 10 outputs, ([\d,]+) parameters", DOC.read_text())
    assert summary and int(summary.group(1)) == len(checked.layers)
    assert summary.group(2) == f"{count_parameters(net):,}"
