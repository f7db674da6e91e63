"""The 2020 `SpikingFlow.softbp` names, so that 2020 scripts run with `SpikingFlow` replaced by
`softspike` in their imports: `neuron` (BaseNode, IFNode, LIFNode, PLIFNode with `pulse_soft=`),
`soft_pulse_function` (the gates, with their 2020 defaults) and `ModelPipeline`. The neurons are
also reachable as `softbp.LIFNode` etc., as in the first 2020 releases.

In this namespace the gradient through the reset is the 2020 straight-through form by default
(`reset_grad="straight_through"`, see `softbp.neuron`), so old scripts train as they did.
"""

from softspike.pipelines.model_pipeline import ModelPipeline
from softspike.softbp import neuron, soft_pulse_function
from softspike.softbp.neuron import BaseNode, IFNode, LIFNode, PLIFNode

__all__ = ["BaseNode", "IFNode", "LIFNode", "ModelPipeline", "PLIFNode", "neuron", "soft_pulse_function"]
