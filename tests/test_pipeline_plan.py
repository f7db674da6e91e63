"""The plan document: digest, loading, and refusing plans that do not fit the spec or the world."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from softspike.models import load_spec
from softspike.pipelines.planning.document import PipelinePlan, PlanError, check_plan, load_plan, spec_digest


def _plan_dict(checked: Any, cuts: list[int], **over: Any) -> dict[str, Any]:
    n = len(checked.spec.layers)
    bounds = [0, *cuts, n]
    stages = [
        dict(index=i, device="cpu", blocks=[f"layers[{j}]" for j in range(a, b)], start=a, stop=b,
             predicted_time_ms=1.0, predicted_memory_bytes=10, boundary_bytes=0 if b == n else 4)
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
    ]
    data = dict(format="softspike-pipeline-plan/1", spec_name=checked.spec.name, spec_sha256=spec_digest(checked),
                n_blocks=n, batch_size=8, microbatches=4, schedule="gpipe", T=checked.spec.T, stages=stages,
                predicted_step_ms=3.0, predicted_bubble=0.2, predicted_images_per_s=100.0)
    data.update(over)
    return data


def test_digest_ignores_spelling() -> None:
    checked = load_spec("mnist_fc")
    data = checked.to_json()
    shuffled = dict(reversed(list(data.items())))
    shuffled["$schema"] = "whatever.json"
    assert spec_digest(shuffled) == spec_digest(checked) == spec_digest(checked.spec)
    data["T"] = data["T"] + 1
    assert spec_digest(data) != spec_digest(checked)


def test_round_trip_and_check(tmp_path: Path) -> None:
    checked = load_spec("mnist_fc")
    plan = PipelinePlan.model_validate(_plan_dict(checked, [2]))
    f = tmp_path / "plan.json"
    f.write_text(plan.to_json())
    again = load_plan(f)
    assert again == plan
    check_plan(again, checked, world_size=2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stages": "drop-first"}, "previous stage stops at 0"),
        ({"microbatches": 9}, "micro-batches x 1 replicas need a batch"),
        ({"format": "other/1"}, "not a pipeline plan"),
        ({"spec_sha256": "xyz"}, "spec_sha256"),
    ],
)
def test_bad_files(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    checked = load_spec("mnist_fc")
    data = _plan_dict(checked, [2])
    for k, v in change.items():
        data[k] = data["stages"][1:] if v == "drop-first" else v
    f = tmp_path / "plan.json"
    f.write_text(json.dumps(data))
    with pytest.raises(PlanError, match=message):
        load_plan(f)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PlanError, match="line 1"):
        load_plan(tmp_path / "bad.json")


def test_check_refuses_other_spec_and_world() -> None:
    checked = load_spec("mnist_fc")
    plan = PipelinePlan.model_validate(_plan_dict(checked, [2], data_parallel=2))
    with pytest.raises(PlanError, match="needs 4 processes"):
        check_plan(plan, checked, world_size=2)
    other = load_spec("mnist_conv")
    with pytest.raises(PlanError, match="made for spec 'mnist_fc'"):
        check_plan(plan, other, world_size=4)
    data = checked.to_json()
    data["T"] += 1
    with pytest.raises(PlanError, match="spec differs") as err:
        check_plan(plan, data, world_size=4)
    assert "made for spec" not in str(err.value)
