"""Placing a network's stages on devices and running them on torch.distributed.

Two phases, one package each, and what they share:

- `planning`: before training, `softspike plan`. `planning.profile` measures each top-level block,
  `planning.partition` finds the exact stage split, `planning.planner.make_plan` glues them into
  `planning.document` (the plan: PipelinePlan, load_plan, check_plan), and `planning.check` runs a
  planned split in one process to test the predictions.
- `running`: the processes torchrun starts. `running.launch` checks the command line and starts them,
  `running.worker` is one process's training loop, `running.stages` its pipeline stage (or
  `running.ddp` its data-parallel replica), `running.checkpoint` its checkpoint files.
- `costs`: how a block or a stage is weighed and timed, one rule for the prediction and the measurement.
- `ModelPipeline`: the 2020 hand-split pipeline on one machine.

Dependencies point down: running -> planning.document -> (models, core); both -> costs; both ->
`softspike.train.recipe` and the train modules below it, never `softspike.train.loop`.
"""

from softspike.pipelines.model_pipeline import ModelPipeline, PipelineError
from softspike.pipelines.planning.document import PipelinePlan, PlanError, StagePlan, check_plan, load_plan, spec_digest

__all__ = ["ModelPipeline", "PipelineError", "PipelinePlan", "PlanError", "StagePlan", "check_plan", "load_plan",
           "spec_digest"]
