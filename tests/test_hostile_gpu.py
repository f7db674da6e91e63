"""GPU requests on a machine without CUDA: a plan or a clear error, never a traceback.

Each case runs in this process (cheap): `ModelPipeline.append(m, "0")` (the 2020 form of cuda:0),
`softspike plan --devices cuda:0,cuda:1` with given memories (a plan, profiled on the CPU, and a
clear error when the memories cannot hold it) and `softspike train SPEC --device cuda`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from softspike.cli import main

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="these cases are about a machine without CUDA")
SPEC = {  # small, so that profiling it takes a moment
    "name": "g", "input_shape": [1, 8, 8], "T": 2, "encoder": {"type": "poisson"},
    "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 32},
               {"type": "neuron", "neuron": {"type": "lif"}}, {"type": "linear", "out_features": 10},
               {"type": "neuron", "neuron": {"type": "lif"}}],
}


@no_cuda
@pytest.mark.parametrize("gpu", ["0", 0, "cuda:1", torch.device("cuda")])
def test_model_pipeline_append_to_a_gpu_says_so(gpu: object) -> None:
    from softspike.pipelines import ModelPipeline
    from softspike.pipelines.model_pipeline import PipelineError

    pipe = ModelPipeline()
    with pytest.raises(PipelineError, match=r"cuda(:\d)? is not available here \(0 CUDA devices\); append the "
                                            r"stage to 'cpu'"):
        pipe.append(nn.Linear(2, 2), gpu)  # type: ignore[arg-type]


@no_cuda
def test_plan_for_two_gpus_with_given_memories(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, out = tmp_path / "g.json", tmp_path / "plan.json"
    spec.write_text(json.dumps(SPEC))
    plan_args = ["plan", str(spec), "--devices", "cuda:0,cuda:1", "--batch-size", "4", "--microbatches", "2",
                 "--repeats", "1"]
    assert main([*plan_args, "--memory", "8GiB,4GiB", "-o", str(out)]) == 0
    text = capsys.readouterr()
    assert "note: CUDA is not available here: profiled on the CPU, not on cuda:0" in text.out + text.err
    plan = json.loads(out.read_text())
    assert [s["device"] for s in plan["stages"]] == ["cuda:0", "cuda:1"]
    assert all(s["predicted_memory_bytes"] <= cap for s, cap in zip(plan["stages"], (8 << 30, 4 << 30)))

    assert main([*plan_args, "--memory", "1KiB,1KiB"]) == 1
    err = capsys.readouterr().err
    assert "no split into 2 stages fits the memory caps" in err and "against its cap of 1 KiB" in err
    assert "Traceback" not in err


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_train_on_cuda_without_cuda_is_a_clear_error(device: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "mnist_fc", "--device", device, "--epochs", "1", "--quiet", "--checkpoint",
                 str(tmp_path / "ck")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"--device {device!r} is not usable here" in err and "Traceback" not in err
