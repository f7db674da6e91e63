#!/usr/bin/env python
"""`make bench-gpu`: softspike on one GPU against its own CPU results and against the peers there.

Run as is on a machine with a CUDA GPU (about 5 minutes on a current one); every step prints as it goes:

  1. agreement: every backend that runs the built-in linear neurons (IF, LIF, parametric LIF) on the
     device, under four settings (hard reset, soft reset with atan, detach_reset, the straight-through
     reset gradient), against the reference loop on the CPU: the fraction of identical spikes and the
     largest gradient difference (relative to the largest gradient); the spike ops too (Poisson bit for
     bit from one seed, spike-linear Y and dW, packed bits).
  2. LIF forward+backward [T=50, B=256, N=980] against SpikingJelly (each of its CUDA implementations,
     cuda/triton/torch, in a process of its own with softspike beside it: it picks one at import),
     snnTorch, Norse and a plain loop, interleaved, medians, with the HBM floor: four float32 tensors
     of T·B·N (X read, S written forward; dL/dS read, dL/dX written backward) at the device's measured
     copy bandwidth.
  3. the MNIST net (T=8/B=128 and T=50/B=256) and the conv SNN (T=8/B=32) of `workloads.py`, training
     steps, every library interleaved, medians, images/s (SpikingJelly's implementations again each in
     its own process beside softspike).
  4. one epoch of `softspike train mnist_fc --device cuda` (the embedded mnist_mini set unless
     --dataset names another), wall time.
  5. a 2-process NCCL pipeline of mnist_fc (`softspike plan` then `softspike train --pipeline --nproc 2`)
     when two GPUs exist.

Then it writes the "GPU" section of docs/benchmarks.md (or --out FILE), with the issue-16 goals
(LIF within 2x the HBM floor and >= 2x SpikingJelly's fastest backend, MNIST training >= 2x, conv
>= 1.3x) marked met or not.

`--dry-run` runs every step at tiny shapes on the CPU (or --device), timing loops once each (the
figures mean nothing), so that a test keeps this script working on machines without a GPU: peers that
do not import are skipped with the reason, and nothing is written unless --out is given.

    python benchmarks/gpu.py [--rounds 5] [--dataset mnist_mini] [--out FILE] [--dry-run] [--device cuda:0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers
from run_all import write_section
from workloads import make_step

ROOT = Path(__file__).resolve().parent.parent
LIBS = ["softspike", "plain", "spikingjelly", "snntorch", "norse"]
SJ_IMPLS = ("cuda", "triton", "torch")  # SpikingJelly 2's CUDA implementations (SJ_LIF_CUDA_IMPLEMENTATION)
SETTINGS = {  # (v_reset, gate, detach_reset, reset_grad)
    "hard": (0.0, "sigmoid", False, "surrogate"), "soft/atan": (None, "atan", False, "surrogate"),
    "detach": (0.0, "sigmoid", True, "surrogate"), "straight": (0.0, "sigmoid", False, "straight_through"),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, reps: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each fn: every round runs each fn `reps` times, in turn."""
    for fn in fns.values():
        fn()  # warm-up: kernel compilation, allocations
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) / reps)
    return {k: statistics.median(v) for k, v in times.items()}


def copy_bandwidth(device: torch.device, dry: bool = False) -> float:
    """Read + write bytes per second of a 256 MiB device copy (bigger than any cache; 4 MiB in a dry run)."""
    a = torch.rand(2**20 if dry else 64 * 2**20, device=device)
    b = torch.empty_like(a)
    return 2 * a.numel() * 4 / interleaved({"copy": lambda: b.copy_(a)}, 5, 3, device)["copy"]


def usable(libs: list[str], device: torch.device, log: list[str]) -> list[str]:
    ok = []
    for lib in libs:
        try:
            peers.make_neuron(lib).to(device)(torch.zeros(2, 1, 3, device=device))
            ok.append(lib)
        except Exception as err:  # a peer that is missing or does not run on this device is skipped, said why
            say(log, f"- skipped {lib}: {type(err).__name__}: {str(err).splitlines()[0][:160]}")
    return ok


def say(log: list[str], line: str) -> None:
    print(line, flush=True)
    log.append(line)


# -- 1. agreement with the CPU ------------------------------------------------------------------


def agreement(device: torch.device, dry: bool, log: list[str]) -> None:
    from softspike import get_registry
    from softspike.core.backends import BackendError
    from softspike.core.step import FireConfig, multistep_reference

    reg = get_registry()
    T, B, N = (3, 2, 70) if dry else (16, 8, 1000)
    say(log, f"\n### Agreement with the CPU reference ({device}, [T={T}, B={B}, N={N}])\n")
    say(log, "| neuron | setting | backend | identical spikes | max grad diff (rel.) |")
    say(log, "|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, N, generator=g) * 0.8 + 0.45
    gy = torch.randn(T, B, N, generator=g)
    for name in ("if", "lif", "parametric_lif"):
        for setting, (v_reset, gate, detach, reset_grad) in SETTINGS.items():
            cfg = FireConfig(1.0, v_reset, reg.surrogates.create(gate), detach, reset_grad)  # type: ignore[arg-type]
            dyn = reg.neurons.create_dynamics(name)
            xr = x.clone().requires_grad_(True)
            ref = multistep_reference(dyn, cfg, xr)
            (want,) = torch.autograd.grad(ref, [xr], gy)
            for b in reg.backends:
                if b.name == "compiled" and (dry or (name, setting) != ("lif", "hard")):
                    continue  # one compile per case: LIF/hard only on a GPU (the time limit), none in a dry run
                dyn_d = reg.neurons.create_dynamics(name).to(device)
                cfg_d = FireConfig(1.0, v_reset, reg.surrogates.create(gate), detach, reset_grad)  # type: ignore[arg-type]
                xd = x.to(device).requires_grad_(True)
                try:
                    reg.backends.select(dyn_d, cfg_d, xd, b.name)
                except BackendError:
                    continue  # not this backend's case (the table in docs/gpu.md says which)
                s = b.run(dyn_d, cfg_d, xd)
                (got,) = torch.autograd.grad(s, [xd], gy.to(device))
                same = float((s.detach().cpu() == ref.detach()).float().mean())
                diff = float((got.cpu() - want).abs().max() / want.abs().max().clamp_min(1e-12))
                say(log, f"| {name} | {setting} | {b.name} | {same:.6f} | {diff:.2e} |")
    spike_ops_agreement(device, log)


def spike_ops_agreement(device: torch.device, log: list[str]) -> None:
    from softspike.kernels.bitpack import pack_spikes, unpack_spikes
    from softspike.kernels.sampling import poisson
    from softspike.kernels.spike_linear import spike_linear

    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 300, generator=g)
    seed = torch.tensor([12345])
    same = torch.equal(poisson(x, 8, seed), poisson(x.to(device), 8, seed.to(device)).cpu())
    say(log, f"\nPoisson [8, 64, 300] from one seed: {'identical' if same else 'DIFFERENT'} on the CPU and {device}")
    s = (torch.rand(4, 64, 300, generator=g) < 0.1).float()
    w = torch.randn(200, 300, generator=g)
    ys, gws = [], []
    for t, ww in ((s, w), (s.to(device), w.to(device))):
        ww.requires_grad_(True)
        y = spike_linear(t, ww)
        y.backward(torch.ones_like(y))
        ys.append(y.detach().cpu())
        gws.append(ww.grad.cpu())  # type: ignore[union-attr]
    dy, dw = float((ys[1] - ys[0]).abs().max()), float((gws[1] - gws[0]).abs().max())
    say(log, f"spike-linear [4, 64, 300] x [200, 300] on {device}: max |dY| {dy:.2e}, max |dW| {dw:.2e} "
             "against the CPU")
    back = unpack_spikes(pack_spikes(s.to(device), 0))
    same = "identical" if torch.equal(back.cpu(), s) else "DIFFERENT"
    say(log, f"saved spikes packed and unpacked on {device}: {same}")


# -- 2. LIF forward+backward and 3. training steps -------------------------------------------------


def lif_case(libs: list[str], device: torch.device, dry: bool, rounds: int) -> dict[str, Any]:
    T, B, N = (4, 8, 98) if dry else (50, 256, 980)
    torch.manual_seed(3)
    x = (torch.randn(T, B, N, device=device) * 0.6 + 0.6).requires_grad_()
    gy = torch.randn(T, B, N, device=device)
    neurons = {lib: peers.make_neuron(lib).to(device) for lib in libs}

    def call(lib: str) -> Callable[[], None]:
        def run() -> None:
            neurons[lib](x).backward(gy)
            x.grad = None
        return run

    times = interleaved({lib: call(lib) for lib in libs}, rounds, 1 if dry else 5, device)
    return {"shape": [T, B, N], "s": times, "floor_s": 4 * T * B * N * 4 / copy_bandwidth(device, dry)}


def sj_children(device: torch.device, dry: bool, rounds: int, log: list[str]) -> dict[str, dict[str, Any]]:
    """The LIF and training cases per SpikingJelly CUDA implementation, each in its own process beside softspike."""
    out: dict[str, dict[str, Any]] = {}
    impls = ["torch"] if dry else list(SJ_IMPLS)
    for impl in impls:
        env = {**os.environ, "SJ_LIF_CUDA_IMPLEMENTATION": impl}
        cmd = [sys.executable, __file__, "--lif-child", "--device", str(device), "--rounds", str(rounds)]
        proc = subprocess.run(cmd + (["--dry-run"] if dry else []), capture_output=True, text=True, env=env,
                              timeout=300, check=False)
        last = proc.stdout.strip().splitlines()[-1:] or [""]
        if proc.returncode != 0 or not last[0].startswith("{"):
            say(log, f"- SpikingJelly {impl}: did not run ({(proc.stderr.strip().splitlines() or ['?'])[-1][:160]})")
            continue
        res = json.loads(last[0])
        if "error" in res:
            say(log, f"- SpikingJelly {impl}: not usable here ({res['error']})")
            continue
        out[impl] = res
        say(log, f"- SpikingJelly's {impl} implementation ran in a process of its own, beside softspike")
    return out


def train_cases(libs: list[str], device: torch.device, dry: bool, rounds: int) -> dict[str, dict[str, float]]:
    cases = [("MNIST", "mlp", 8, 128), ("MNIST", "mlp", 50, 256), ("conv", "conv", 8, 32)]
    out: dict[str, dict[str, float]] = {}
    for name, kind, T, B in cases:
        if dry:
            T, B = (2, 4) if T == 8 else (3, 4)
        label = f"{name} T={T} B={B}"
        steps = {lib: make_step(lib, kind, T, B, str(device))[0] for lib in libs}
        out[label] = {lib: B / s for lib, s in interleaved(steps, rounds, 1 if dry else 3, device).items()}  # images/s
    return out


# -- 4. the CLI's training epoch and 5. the NCCL pipeline ------------------------------------------


def cli(args: list[str], timeout: int = 600) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "softspike", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    return time.perf_counter() - t0, proc


def train_epoch(device: torch.device, dry: bool, dataset: str, log: list[str]) -> None:
    extra = ["--train-subset", "64", "--batch-size", "32"] if dry else []
    with tempfile.TemporaryDirectory() as tmp:
        wall, proc = cli(["train", "mnist_fc", "--device", str(device), "--dataset", dataset, "--epochs", "1",
                          "--quiet", "--logdir", tmp, *extra])
        if proc.returncode != 0:
            say(log, f"- softspike train mnist_fc --device {device}: exit {proc.returncode}: {proc.stderr[-300:]}")
            return
        metrics = json.loads((Path(tmp) / "metrics.json").read_text())
    acc = metrics["final"]["test_accuracy"]
    timing = "" if dry else f": {metrics['wall_time_s']:.1f} s training, {wall:.1f} s with process start and data"
    say(log, f"- one epoch of `softspike train mnist_fc --device {device} --dataset {dataset}`{timing}; "
             f"test accuracy {acc}")


def nccl_pipeline(dry: bool, dataset: str, log: list[str]) -> None:
    if torch.cuda.device_count() < 2:
        say(log, f"- 2-process NCCL pipeline: not run ({torch.cuda.device_count()} CUDA devices here, it needs 2)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "plan.json"
        _, proc = cli(["plan", "mnist_fc", "--devices", "cuda:0,cuda:1", "--batch-size", "128", "--microbatches", "4",
                       "-o", str(plan)])
        if proc.returncode == 0:
            subset = ["--train-subset", "256"] if dry else []
            wall, proc = cli(["train", "mnist_fc", "--pipeline", str(plan), "--nproc", "2", "--dataset", dataset,
                              "--epochs", "1", "--batch-size", "128", "--quiet", *subset])
        note = f"{wall:.1f} s wall for one epoch" if proc.returncode == 0 and not dry else f"exit {proc.returncode}"
        err = proc.stderr[-200:] if proc.returncode else ""
        say(log, f"- 2-process NCCL pipeline of mnist_fc (1F1B, 4 micro-batches): {note} {err}")


# -- the report -----------------------------------------------------------------------------------


def report(lif: dict[str, Any], sj: dict[str, dict[str, Any]], train: dict[str, dict[str, float]],
           log: list[str]) -> None:
    say(log, f"\n### LIF forward+backward {lif['shape']} (median ms; HBM floor {lif['floor_s'] * 1e3:.3f} ms)\n")
    say(log, "| library | ms | x floor |")
    say(log, "|---|---|---|")
    for lib, s in lif["s"].items():
        say(log, f"| {lib} | {s * 1e3:.3f} | {s / lif['floor_s']:.2f} |")
    best_sj = None
    for impl, res in sj.items():
        ratio = res["lif"]["s"]["spikingjelly"] / res["lif"]["s"]["softspike"]
        best_sj = ratio if best_sj is None else min(best_sj, ratio)
        say(log, f"| spikingjelly ({impl}), own process | {res['lif']['s']['spikingjelly'] * 1e3:.3f} | softspike "
                 f"{ratio:.2f}x faster beside it |")
    floor_x = lif["s"]["softspike"] / lif["floor_s"]
    sj_goal = "no SpikingJelly run" if best_sj is None else f"{'met' if best_sj >= 2 else 'not met'} ({best_sj:.2f}x)"
    say(log, f"\nGoal LIF within 2x the floor: {'met' if floor_x <= 2 else 'not met'} ({floor_x:.2f}x); "
             f">= 2x SpikingJelly's fastest: {sj_goal}")
    for label, ips in train.items():
        say(log, f"\n### Training {label} (images/s, median)\n")
        say(log, " | ".join(f"{lib} {v:.0f}" for lib, v in ips.items()))
        ratios = [ips["softspike"] / v for lib, v in ips.items() if lib in ("spikingjelly", "snntorch", "norse")]
        for impl, res in sj.items():  # side by side with softspike in SpikingJelly's own process
            beside = res["train"][label]
            ratios.append(beside["softspike"] / beside["spikingjelly"])
            say(log, f"spikingjelly ({impl}), own process: {beside['spikingjelly']:.0f}, softspike beside it "
                     f"{beside['softspike']:.0f}")
        if ratios:
            goal = 1.3 if label.startswith("conv") else 2.0
            ratio = min(ratios)
            say(log, f"Goal >= {goal}x the fastest peer: {'met' if ratio >= goal else 'not met'} ({ratio:.2f}x)")


def lif_child(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    log: list[str] = []
    libs = usable(["softspike", "spikingjelly"], device, log)
    if "spikingjelly" not in libs:
        print(json.dumps({"error": " ".join(log)[:300] or "?"}))
        return
    lif = lif_case(libs, device, args.dry_run, args.rounds)
    print(json.dumps({"lif": lif, "train": train_cases(libs, device, args.dry_run, args.rounds)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="every step but the timings, tiny shapes, on the CPU")
    ap.add_argument("--device", help="default cuda (cpu with --dry-run)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--dataset", default="mnist_mini", help="for the training epoch (default: the embedded subset)")
    ap.add_argument("--out", help="write the section here instead of docs/benchmarks.md (--dry-run: only here)")
    ap.add_argument("--lif-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.device = args.device or ("cpu" if args.dry_run else "cuda")
    args.rounds = 1 if args.dry_run else args.rounds
    if args.lif_child:
        return lif_child(args)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench-gpu: no CUDA device here; `--dry-run` checks the script on the CPU")
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    log: list[str] = []
    kind = "dry run" if args.dry_run else "not a GPU"
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device} ({kind})"
    say(log, f"Device: {what}; torch {torch.__version__}; peers: "
             + ", ".join(f"{lib} {peers.version(lib)}" for lib in LIBS if lib != "plain"))
    t0 = time.perf_counter()
    failed: list[str] = []

    def guarded(what: str, fn: Callable[[], Any], default: Any = None) -> Any:
        """One step; a failure is reported (and fails the run at the end), the other steps still run."""
        try:
            return fn()
        except Exception as err:
            failed.append(what)
            say(log, f"- {what} FAILED: {type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")
            return default

    guarded("agreement", lambda: agreement(device, args.dry_run, log))
    say(log, "\n### Peers\n")
    libs = usable(args.libs.split(","), device, log)
    say(log, f"- running: {', '.join(libs)}")
    lif = guarded("LIF case", lambda: lif_case(libs, device, args.dry_run, args.rounds))
    sj = guarded("SpikingJelly children", lambda: sj_children(device, args.dry_run, args.rounds, log), {}) \
        if "spikingjelly" in libs else {}
    train = guarded("training cases", lambda: train_cases(libs, device, args.dry_run, args.rounds), {})
    say(log, "\n### The command line\n")
    guarded("training epoch", lambda: train_epoch(device, args.dry_run, args.dataset, log))
    guarded("NCCL pipeline", lambda: nccl_pipeline(args.dry_run, args.dataset, log))
    if args.dry_run:
        say(log, "\nDry run: the figures below time tiny shapes once each on the CPU; they measure nothing.")
    if lif is not None:
        guarded("report", lambda: report(lif, sj, train, log))
    say(log, f"\n{'dry run' if args.dry_run else 'run'} took {time.perf_counter() - t0:.0f} s")
    head = "## GPU (`make bench-gpu`)"
    intro = ["Command: `make bench-gpu` (`benchmarks/gpu.py`; method in its docstring). Figures from one run.", ""]
    if args.out:
        write_section(head, intro, log, Path(args.out))
    elif not args.dry_run:
        write_section(head, intro, log)
    if failed:
        sys.exit(f"bench-gpu: {len(failed)} step(s) failed: {', '.join(failed)} (see above)")


if __name__ == "__main__":
    main()
