"""Placing a network's stages on devices and running them on torch.distributed.

- `plan`: the plan document (PipelinePlan, load_plan, check_plan), shared with the runtime;
- `profile`: measured per-block costs; `partition`: the exact stage split; `planner.make_plan`;
- `ModelPipeline`: the 2020 hand-split pipeline on one machine.
"""

from softspike.pipelines.model_pipeline import ModelPipeline, PipelineError
from softspike.pipelines.plan import PipelinePlan, PlanError, StagePlan, check_plan, load_plan, spec_digest

__all__ = ["ModelPipeline", "PipelineError", "PipelinePlan", "PlanError", "StagePlan", "check_plan", "load_plan",
           "spec_digest"]
