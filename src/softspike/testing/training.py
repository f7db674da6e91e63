"""The training property: a neuron (or gate) trains mnist_fc's network through the training loop.

The other properties check one layer on small random inputs; this one runs what a user runs. A
spec of mnist_fc's shape (784-196-10, Poisson input) with the neuron and gate under test, at a batch
where the hidden layer has at least `scan_compiled.MIN_NUMEL` neurons per step, so that every multi-step
path `auto` picks for a layer of production size runs (a declared kernel, the compiled generic
scan, or the reference loop for the small readout layer):

    fit, a few steps on one mnist_mini batch     loss finite at every step and lower at the end
    one step in the loop's contexts              every weight's gradient is non-zero
    torch.compile(body, fullgraph=True)          the same spikes as eager on the same input

`fit` runs with the loop's own contexts (`compact_saved_spikes`, the health checks) and returns
per-epoch losses, so each epoch here is one step on the same batch (the first `batch` images of
mnist_mini, saved as an npz dataset that is its own test split).
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softspike.core.registry import Registry, get_registry
from softspike.kernels import scan_compiled
from softspike.kernels.bitpack import compact_saved_spikes

#: The batch that gives mnist_fc's hidden layer (196 neurons) at least `scan_compiled.MIN_NUMEL` per step.
BATCH = -(-scan_compiled.MIN_NUMEL // 196)
STEPS = 3


#: Thresholds tried in turn until both layers fire at initialisation (a neuron whose default time
#: constant is long, like lif's tau = 100, charges too little in T = 8 steps to reach 1).
THRESHOLDS = tuple(4.0 ** -k for k in range(7))  # 1 down to 1/4096


def training_spec(neuron: str, gate: str = "sigmoid", v_threshold: float = 1.0, T: int = 8) -> dict[str, Any]:
    """mnist_fc with both neuron layers of type `neuron` (default parameters), gate `gate` (defaults)
    and threshold `v_threshold`."""
    from softspike.models.load import load_spec

    spec = copy.deepcopy(load_spec("mnist_fc").to_json())
    spec["name"], spec["T"] = f"mnist_fc_{neuron}_{gate}", T
    for layer in spec["layers"]:
        if layer["type"] == "neuron":
            layer["neuron"], layer["surrogate"] = {"type": neuron}, {"type": gate}
            layer["v_threshold"] = v_threshold
    return spec


def check_trains(neuron: str, gate: str = "sigmoid", registry: Registry | None = None, steps: int = STEPS,
                 batch: int = BATCH, compile_backend: str | None = "aot_eager") -> dict[str, Any]:
    """Train `training_spec(neuron, gate)` for `steps` steps; AssertionError naming what failed.

    Returns {"losses": [...], "paths": {layer: path}} for the report. `compile_backend` is the
    torch.compile backend of the fullgraph check ("aot_eager" traces forward and backward graphs as
    inductor does, without its minutes of code generation; "inductor" for the full compile; None
    skips the check).
    """
    from softspike.data import mnist_mini_arrays
    from softspike.models.builder import build
    from softspike.models.load import check_spec
    from softspike.train.data import load_dataset
    from softspike.train.loop import fit, readout_loss

    reg = registry or get_registry()
    x, y = load_dataset("mnist_mini").train.batch(torch.arange(batch), "cpu")
    # fit on a file of just this batch (as train and test split): the loop runs as on mnist_mini,
    # without evaluating 2,000 test images after every step
    a = mnist_mini_arrays()
    checked, rates = None, {}
    for th in THRESHOLDS:
        spec = training_spec(neuron, gate, th)
        checked = check_spec(spec, spec["name"], reg)
        torch.manual_seed(0)
        rates = _firing(build(checked, reg), x)
        if min(rates.values()) > 0:
            break
    assert checked is not None and min(rates.values()) > 0, (
        f"a layer stays silent at every threshold in {THRESHOLDS} (firing rates {rates}): nothing to train"
    )
    with tempfile.TemporaryDirectory(prefix="softspike-train-property-") as tmp:
        path = Path(tmp) / "batch.npz"
        np.savez(path, x_train=a["x_train"][:batch], y_train=a["y_train"][:batch], x_test=a["x_train"][:batch],
                 y_test=a["y_train"][:batch])
        metrics = fit(checked, {"dataset": f"npz:{path}", "epochs": steps, "batch_size": batch, "lr": 0.01,
                                "test_batch_size": batch, "progress": False}, verbose=False, registry=reg)
    losses = [float(e["train_loss"]) for e in metrics["epochs"]]
    assert all(math.isfinite(v) for v in losses), f"training loss is not finite: {losses}"
    assert losses[-1] < losses[0], f"training loss does not fall over {steps} steps: {losses}"

    torch.manual_seed(0)
    net = build(checked, reg)
    with compact_saved_spikes():  # as the loop does
        loss = readout_loss(net, net.spikes(x).mean(0), y, "cross_entropy")
    loss.backward()
    paths = {path: layer.backend_used for path, layer in net.neuron_layers()}
    dead = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not dead, f"zero gradient for {dead} (paths {paths})"

    if compile_backend is not None:
        _check_compiled(net, x, compile_backend)
    return {"v_threshold": spec["layers"][2]["v_threshold"], "losses": losses, "paths": paths}


def _check_compiled(net: Any, x: torch.Tensor, compile_backend: str) -> None:
    # Train mode with gradients, as a compiled training step runs: spikes equal, weight gradients
    # equal to float rounding (the compiled graph may order the sums differently).
    seq = net.encoder.encode(x, net.T).detach()
    params = [p for p in net.parameters() if p.requires_grad]
    weights = torch.linspace(0.5, 1.5, 10)
    runs = []
    # Every network checked in a process is one more compiled version of the same Sequential.forward:
    # past dynamo's default limit of 8, fullgraph=True would fail on the count, not on the network.
    with torch._dynamo.config.patch(recompile_limit=1024, accumulated_recompile_limit=1 << 16):
        for body in (net.body, torch.compile(net.body, fullgraph=True, backend=compile_backend)):
            out = body(seq)
            runs.append((out.detach(), torch.autograd.grad((out * weights).sum(), params, allow_unused=True)))
    (eager, g_eager), (compiled, g_compiled) = runs
    assert torch.equal(compiled, eager), (
        f"torch.compile(fullgraph=True, backend={compile_backend!r}) spikes differ from eager on "
        f"{float((compiled != eager).float().mean()):.2%} of outputs"
    )
    for (name, _), a, b in zip(((n, p) for n, p in net.named_parameters() if p.requires_grad), g_eager, g_compiled):
        assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, rtol=1e-4, atol=1e-6)), (
            f"torch.compile(fullgraph=True, backend={compile_backend!r}): the gradient of {name} differs from eager"
        )


def _firing(net: Any, x: torch.Tensor) -> dict[str, float]:
    """The mean firing rate of each neuron layer on `x` (no gradient: a cheap probe)."""
    from softspike.train.monitor import FiringRates

    with FiringRates(net.neuron_layers()) as monitor, torch.no_grad():
        net.spikes(x)
        return {name: monitor.rates().get(name, 0.0) for name, _ in net.neuron_layers()}
