"""The pipeline plan: which top-level blocks of a spec run on which device, with the profile's
predictions. One JSON document (`softspike plan ... -o plan.json`) that the runtime reads and
checks against the spec it was asked to train before any process group exists."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, ValidationError, model_validator

from softspike.core.errors import SoftspikeError
from softspike.core.params import Params, format_validation_error

PLAN_FORMAT: Final = "softspike-pipeline-plan/1"


class PlanError(SoftspikeError, ValueError):
    """A pipeline plan that cannot be made, read, or used with the spec and processes at hand."""


class StagePlan(Params):
    """One pipeline stage: the contiguous top-level blocks `layers[start:stop]` on one device."""

    index: int = Field(ge=0, description="Stage number, 0..S-1.")
    device: str = Field(min_length=1, description='Device of the stage: "cpu", "cuda:0", ...')
    blocks: list[str] = Field(min_length=1, description='Spec paths of its top-level blocks, e.g. ["layers[0]"].')
    start: int = Field(ge=0, description="First top-level block index (inclusive).")
    stop: int = Field(ge=1, description="Last top-level block index + 1 (exclusive).")
    recompute: bool = Field(default=False, description="Recompute activations in backward (checkpointing).")
    predicted_time_ms: float = Field(ge=0, description="Predicted forward+backward time per micro-batch.")
    predicted_memory_bytes: int = Field(ge=0, description="Predicted peak memory of the stage's device.")
    boundary_bytes: int = Field(ge=0, description="Bytes of the tensor this stage sends on (0 for the last).")


class PipelinePlan(Params):
    """A spec split into contiguous stages over devices, with the predicted step time and bubble."""

    format: Literal["softspike-pipeline-plan/1"] = Field(description="Plan document format and version.")
    spec_name: str = Field(min_length=1, description="The spec's name.")
    spec_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the canonical spec JSON.")
    n_blocks: int = Field(ge=1, description="Top-level blocks of the spec (len(spec.layers)).")
    batch_size: int = Field(ge=1, description="Global batch size per optimizer step.")
    microbatches: int = Field(ge=1, description="Micro-batches per step (split on the batch dimension).")
    schedule: Literal["gpipe", "1f1b", "interleaved_1f1b"] = Field(description="Pipeline schedule.")
    T: int = Field(ge=1, description="Time steps the profile was measured at.")
    stages: list[StagePlan] = Field(min_length=1, description="The stages, in pipeline order.")
    data_parallel: int = Field(default=1, ge=1, description="Replicas per stage (pipeline x DDP).")
    predicted_step_ms: float = Field(ge=0, description="Predicted time of one optimizer step.")
    predicted_bubble: float = Field(ge=0, le=1, description="Predicted fraction of idle stage time.")
    predicted_images_per_s: float = Field(ge=0, description="Predicted training throughput.")

    @model_validator(mode="after")
    def _consistent(self) -> PipelinePlan:
        problems = structure_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_json(self) -> str:
        """The plan as JSON text (what `softspike plan -o` writes)."""
        return self.model_dump_json(indent=2) + "\n"


def structure_problems(plan: PipelinePlan) -> list[str]:
    """What is wrong with the stages themselves: numbering, contiguity, coverage of all blocks."""
    problems: list[str] = []
    parts = plan.microbatches * plan.data_parallel
    if parts > plan.batch_size:
        problems.append(
            f"microbatches: {plan.microbatches} micro-batches x {plan.data_parallel} replicas need a batch of "
            f"at least {parts} samples, batch_size is {plan.batch_size}"
        )
    expected_start = 0
    for pos, stage in enumerate(plan.stages):
        where = f"stages[{pos}]"
        if stage.index != pos:
            problems.append(f"{where}.index: is {stage.index}, stages must be numbered 0..S-1 in order")
        if stage.start != expected_start:
            problems.append(
                f"{where}.start: is {stage.start}, but the previous stage stops at {expected_start}; "
                "stages must be contiguous"
            )
        if stage.stop <= stage.start:
            problems.append(f"{where}: stop ({stage.stop}) must be greater than start ({stage.start})")
        want = [f"layers[{i}]" for i in range(stage.start, stage.stop)]
        if stage.blocks != want:
            problems.append(f"{where}.blocks: {stage.blocks} does not match start..stop, expected {want}")
        expected_start = stage.stop
    if expected_start != plan.n_blocks:
        problems.append(
            f"stages: they cover blocks 0..{expected_start - 1}, but the spec has {plan.n_blocks} top-level blocks"
        )
    return problems


def _spec_json(spec: Any) -> Any:
    """The spec as a JSON value with defaults filled in, from a CheckedSpec, a spec model or a dict."""
    from softspike.models.load import CheckedSpec, check_spec  # models import torch: keep plan.py light

    if isinstance(spec, CheckedSpec):
        return spec.to_json()
    if isinstance(spec, dict):
        return check_spec(dict(spec)).to_json()
    dump = getattr(spec, "model_dump", None)
    if dump is None:
        raise PlanError(f"spec_digest: expected a checked spec, a spec model or a dict, got {type(spec).__name__}")
    data: dict[str, Any] = dump(mode="json", by_alias=True, exclude_none=False)
    data.pop("$schema", None)
    return data


def spec_digest(spec: Any) -> str:
    """sha256 (hex) of the canonical spec JSON: defaults filled in, keys sorted, no whitespace.
    Two spellings of the same network (key order, omitted defaults, `$schema`) give the same digest."""
    text = json.dumps(_spec_json(spec), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_plan(path: str | Path) -> PipelinePlan:
    """Read and validate a plan file; every problem raises PlanError naming the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise PlanError(f"{path}: cannot read the pipeline plan ({reason}); make one with `softspike plan`") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PlanError(f"{path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise PlanError(f"{path}: not a pipeline plan (format is {got!r}, expected {PLAN_FORMAT!r}); "
                        "make one with `softspike plan SPEC ... -o plan.json`")
    try:
        return PipelinePlan.model_validate(data)
    except ValidationError as err:
        lines = format_validation_error(err)
        raise PlanError(f"{path}: invalid pipeline plan:\n  " + "\n  ".join(lines)) from None


def check_plan(plan: PipelinePlan, checked_spec: Any, world_size: int) -> None:
    """Refuse a plan that does not fit the spec and the processes, before any process group exists:
    another spec (name or digest), another block count, stages that are not contiguous, or
    world_size != len(stages) * data_parallel."""
    problems: list[str] = []
    if isinstance(checked_spec, dict):
        from softspike.models.load import check_spec

        checked_spec = check_spec(dict(checked_spec))
    spec = getattr(checked_spec, "spec", checked_spec)
    name = getattr(spec, "name", None)
    if name != plan.spec_name:
        problems.append(f"the plan was made for spec {plan.spec_name!r}, not {name!r}")
    n_blocks = len(getattr(spec, "layers", []))
    if n_blocks != plan.n_blocks:
        problems.append(f"the plan splits {plan.n_blocks} top-level blocks, the spec has {n_blocks}")
    digest = spec_digest(checked_spec)
    if digest != plan.spec_sha256:
        problems.append(
            f"the spec differs from the one the plan was made for (sha256 {digest[:12]}... "
            f"against {plan.spec_sha256[:12]}...); re-plan with `softspike plan`"
        )
    problems += structure_problems(plan)
    need = len(plan.stages) * plan.data_parallel
    if world_size != need:
        problems.append(
            f"the plan needs {need} processes ({len(plan.stages)} stages x {plan.data_parallel} replicas), "
            f"the world has {world_size}; start it with `torchrun --nproc-per-node {need}`"
        )
    if problems:
        raise PlanError("pipeline plan does not fit:\n  " + "\n  ".join(problems))


def plan_json_schema() -> dict[str, Any]:
    """The JSON Schema of plan documents."""
    schema = PipelinePlan.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "softspike pipeline plan"
    return schema
