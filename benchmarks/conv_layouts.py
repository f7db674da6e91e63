"""Channels-last against contiguous, 1 against 2 threads: the zoo's cifar10_conv training step.

    python benchmarks/conv_layouts.py [--T 4] [--B 16] [--rounds 3]

Four variants of one step (workloads.make_step), each timed at 1 and 2 threads, rounds interleaved
in one process, medians printed as a markdown table:

    softspike              the built network as shipped (spike-input convs write channels-last,
                           the dense input gradient reads the weight channels-last)
    softspike, dX contig.  the same, the input gradient reading the weight as stored (contiguous)
    torch, contiguous      nn.Conv2d/BatchNorm2d and a torch LIF ("plain"), NCHW throughout
    torch, channels-last   the same model with its weights channels-last (activations follow)
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import workloads

from softspike.kernels import spike_conv


def variants(T: int, B: int) -> dict[str, Callable[[], float]]:
    ours, _ = workloads.make_step("softspike", "cifar", T, B)
    shipped = spike_conv._input_grad_weight

    def contiguous_dx() -> float:
        spike_conv._input_grad_weight = lambda w: w
        try:
            return ours()
        finally:
            spike_conv._input_grad_weight = shipped

    plain, _ = workloads.make_step("plain", "cifar", T, B)
    plain_cl, model = workloads.make_step("plain", "cifar", T, B)
    model.to(memory_format=torch.channels_last)
    return {"softspike": ours, "softspike, dX contig.": contiguous_dx, "torch, contiguous": plain,
            "torch, channels-last": plain_cl}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--B", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    steps = variants(a.T, a.B)
    times: dict[tuple[str, int], list[float]] = {}
    for threads in (1, 2):  # warm-up of every variant at both thread counts
        torch.set_num_threads(threads)
        for step in steps.values():
            step()
    for _ in range(a.rounds):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, step in steps.items():
                t0 = time.perf_counter()
                step()
                times.setdefault((name, threads), []).append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med[("softspike", 1)]
    print(f"cifar10_conv training step, T={a.T}, B={a.B}, medians of {a.rounds} interleaved rounds (s; in "
          f"brackets: time / softspike's at 1 thread)\n")
    print("| variant | 1 thread | 2 threads | 2-thread speed-up |")
    print("|---|---:|---:|---:|")
    for name in steps:
        one, two = med[(name, 1)], med[(name, 2)]
        print(f"| {name} | {one:.2f} ({one / base:.2f}) | {two:.2f} ({two / base:.2f}) | {one / two:.2f}x |")


if __name__ == "__main__":
    main()
