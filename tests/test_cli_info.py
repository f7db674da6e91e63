"""`softspike info` says which multi-step path runs here."""

from __future__ import annotations

import json

import pytest

from softspike.cli import main


def test_info_reports_the_fused_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["fused"]["default"] in ("native", "torch")
    assert info["plugins"]["neuron"] >= 4
    assert main(["info"]) == 0
    assert "multi-step path by default" in capsys.readouterr().out
