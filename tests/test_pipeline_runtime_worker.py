"""One process of the multi-process runtime tests (run by torchrun from test_pipeline_runtime.py; no tests here).

    torchrun --nproc-per-node 2 tests/test_pipeline_runtime_worker.py pipeline OUTDIR   # pipeline cases + DDP
    torchrun --nproc-per-node 4 tests/test_pipeline_runtime_worker.py ppdp OUTDIR       # 2 stages x 2 replicas

Each case runs one training step and one evaluation on fixed data and saves what this process holds
(its stage's gradients and buffers, the outputs and losses of the last stage, firing-rate counts) to
OUTDIR/CASE-rankR.pt; the test compares them with one process running the same pieces.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

SPEC: dict[str, Any] = {
    "name": "pp_net", "input_shape": [2, 8, 8], "T": 4, "encoder": {"type": "constant"},
    "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "batchnorm2d"},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "v_threshold": 0.5},
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "residual", "layers": [
            {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
            {"type": "batchnorm2d"},
            {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "v_threshold": 0.5},
        ]},
        {"type": "flatten"},
        {"type": "linear", "out_features": 5},
        {"type": "neuron", "neuron": {"type": "lif", "tau": 2.0}, "v_threshold": 0.5},
    ],
    "readout": {"type": "rate", "scale": 2.0},
}
SPLIT = [(0, 4), (4, 8)]
BATCH = 8
#: (name, schedule, micro-batches, recompute) of the 2-process pipeline cases.
PIPELINE_CASES = [("gpipe1", "gpipe", 1, False), ("gpipe2", "gpipe", 2, False), ("gpipe4", "gpipe", 4, False),
                  ("1f1b2", "1f1b", 2, False), ("1f1b4", "1f1b", 4, False), ("1f1b4rc", "1f1b", 4, True)]


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(BATCH, 2, 8, 8, generator=g) * 2, torch.randint(0, 5, (BATCH,), generator=g)


def _record(engine: Any, result: Any, monitor: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {
        "grads": {f"body.{n}": p.grad.clone() for n, p in engine.module.named_parameters() if p.grad is not None},
        "buffers": {f"body.{n}": b.clone() for n, b in engine.module.named_buffers()},
        "counts": dict(monitor._counts),
    }
    if result is not None:
        out["loss_sum"], out["correct"] = float(result.loss_sum), int(result.correct)
    ev = engine.eval_step(engine.encode(x) if engine.is_first else None, y if engine.is_last else None, 6)
    if ev is not None:
        out["eval_loss_sum"], out["eval_correct"] = float(ev.loss_sum), int(ev.correct)
    return out


def main(mode: str, outdir: Path) -> None:
    from softspike.models.builder import build
    from softspike.models.load import check_spec
    from softspike.pipelines.running.ddp import DDPRuntime
    from softspike.pipelines.running.stages import Layout, PipelineRuntime
    from softspike.train.monitor import FiringRates

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    checked = check_spec(SPEC)
    x, y = batch()
    cpu = torch.device("cpu")
    if mode == "pipeline":
        for name, schedule, m, recompute in PIPELINE_CASES:
            torch.manual_seed(0)
            net = build(checked)
            layout = Layout(tuple(SPLIT), schedule, m, 1, (recompute, recompute))  # type: ignore[arg-type]
            engine = PipelineRuntime(net, checked, layout, rank, cpu, "cross_entropy", None, None, BATCH)
            with FiringRates(_stage_neurons(net, layout, rank)) as monitor:
                result = engine.train_step(x if engine.is_first else None, y if engine.is_last else None)
                torch.save(_record(engine, result, monitor, x, y), outdir / f"{name}-rank{rank}.pt")
        torch.manual_seed(0)
        net = build(checked)
        ddp = DDPRuntime(net, rank, cpu, "cross_entropy", None, BATCH // 2)
        with FiringRates([]) as monitor:
            result = ddp.train_step(x[rank::2], y[rank::2])
            torch.save(_record(ddp, result, monitor, x[rank::2], y[rank::2]), outdir / f"ddp-rank{rank}.pt")
    else:  # 2 stages x 2 replicas on a [pp, dp] mesh
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("pp", "dp"))
        layout = Layout(tuple(SPLIT), "1f1b", 2, 2)
        torch.manual_seed(0)
        net = build(checked)
        engine = PipelineRuntime(net, checked, layout, rank, cpu, "cross_entropy", mesh.get_group("pp"),
                                 mesh.get_group("dp"), BATCH // 2)
        replica = layout.place(rank)[1]
        xs, ys = x[replica::2], y[replica::2]
        with FiringRates([]) as monitor:
            result = engine.train_step(xs if engine.is_first else None, ys if engine.is_last else None)
            torch.save(_record(engine, result, monitor, xs, ys), outdir / f"ppdp-rank{rank}.pt")
    dist.destroy_process_group()


def _stage_neurons(net: Any, layout: Any, rank: int) -> list[Any]:
    start, stop = layout.stages[layout.place(rank)[0]]
    return [(p, m) for p, m in net.neuron_layers() if start <= int(p.split("]")[0].split("[")[1]) < stop]


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
