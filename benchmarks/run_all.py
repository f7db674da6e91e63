#!/usr/bin/env python
"""`make bench`: softspike against SpikingJelly, snnTorch, Norse and a plain PyTorch loop.

All libraries run in one process, interleaved round by round (medians over rounds), with the same
layers (torch's Linear/Conv2d/BatchNorm2d on the merged T·B batch), the same initial weights, data
shapes, loss (MSE of output rates against one-hot labels) and optimizer (Adam, lr 1e-3); only the
spiking neuron (and, for softspike, its Poisson encoder and bit-packed saved spikes) differs.
Inputs are synthetic (no dataset download): MNIST-like intensities, ~20% of pixels lit.

    python benchmarks/run_all.py            # the full run, writes docs/benchmarks.md
    python benchmarks/run_all.py --quick    # a smoke run, writes nothing
    python benchmarks/run_all.py --only plugins   # third-party neurons only (benchmarks/plugin_cases.py)

Memory: "activation memory" is the heap held after forward+loss and before backward (glibc
mallinfo2 bytes in use, from a collected heap, softspike's buffer pool emptied first and its free
buffers not counted), i.e. what autograd keeps for backward plus live outputs; "peak RSS" is the
growth of the resident set over two training steps in a fresh process per library (VmHWM after
minus VmRSS before). The copy-bandwidth floor uses 256 MiB arrays (bigger than any cache).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers
from workloads import init_like, make_step, mnist_batch, model_for, reference_weights

ROOT = Path(__file__).resolve().parent.parent
LIBS = ["softspike", "plain", "spikingjelly", "spikingjelly-s", "snntorch", "norse"]

# -- memory -------------------------------------------------------------------------------------


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _Mallinfo2


def heap_in_use() -> int:
    """Bytes malloc has handed out, less the free buffers softspike's pool keeps for reuse."""
    m = _libc.mallinfo2()
    cached = 0
    try:
        from softspike.kernels.pool import POOL

        cached = POOL.free_bytes
    except ImportError:
        pass
    return int(m.uordblks + m.hblkhd) - cached


def clear_pool() -> None:
    try:
        from softspike.kernels.pool import POOL

        POOL.clear()
    except ImportError:
        pass
    gc.collect()


def proc_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- measurements -------------------------------------------------------------------------------


def timed(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def copy_bandwidth() -> float:
    """Streaming copy bandwidth (read + write bytes per s), 256 MiB arrays: larger than any cache."""
    numel = 64 * 2**20
    a, b = torch.rand(numel), torch.empty(numel)
    b.copy_(a)
    return 2 * numel * 4 / min(timed(lambda: b.copy_(a), 1) for _ in range(5))


def bench_lif(libs: list[str], rounds: int, T: int, B: int, N: int) -> dict[str, dict[str, float]]:
    torch.manual_seed(3)
    x = (torch.randn(T, B, N) * 0.6 + 0.6).requires_grad_()
    g = torch.randn(T, B, N)
    neurons = {lib: peers.make_neuron(lib) for lib in libs}
    ref = None
    res: dict[str, dict[str, float]] = {}
    for lib in libs:
        with torch.no_grad():
            s = neurons[lib](x.detach())
        ref = s if ref is None else ref
        res[lib] = {"rate": float(s.mean()), "agree": float((s == ref).float().mean())}

    def call(lib: str) -> None:
        s = neurons[lib](x)
        s.backward(g)
        x.grad = None

    times: dict[str, list[float]] = {lib: [] for lib in libs}
    for lib in libs:
        call(lib)  # warm-up
    for _ in range(rounds):
        for lib in libs:
            times[lib].append(timed(lambda lib=lib: call(lib), 2))  # type: ignore[misc]
    bw = copy_bandwidth()
    floor = 4 * T * B * N * 4 / bw
    for lib in libs:
        res[lib]["s"] = statistics.median(times[lib])
        res[lib]["floor_x"] = res[lib]["s"] / floor
    res["_"] = {"floor_s": floor, "bw": bw}
    return res


def spike_agreement(libs: list[str], kind: str, T: int, B: int) -> dict[str, dict[str, float]]:
    """Hidden-layer spikes of every library on one identical input, against softspike's."""
    torch.manual_seed(4)
    if kind == "mlp":
        x, _ = mnist_batch(B)
        xs = (torch.rand(T, *x.shape) < x).float()
    else:
        xs = torch.rand(B, 3, 32, 32).unsqueeze(0).expand(T, B, 3, 32, 32)
    out: dict[str, dict[str, float]] = {}
    ref = None
    for lib in libs:
        model = init_like(model_for(lib, kind), reference_weights(kind))
        with torch.no_grad():
            o = model(xs)
        h = model.hidden
        ref = (h, o) if ref is None else ref
        out[lib] = {"rate": float(h.mean()), "out_rate": float(o.mean()),
                    "agree": float((h == ref[0]).float().mean())}
    return out


def bench_train(libs: list[str], rounds: int, kind: str, T: int, B: int, steps: int) -> dict[str, dict[str, float]]:
    fns = {lib: make_step(lib, kind, T, B)[0] for lib in libs}
    for lib in libs:
        fns[lib]()  # warm-up
    times: dict[str, list[float]] = {lib: [] for lib in libs}
    for _ in range(rounds):
        for lib in libs:
            times[lib].append(timed(fns[lib], steps))
    res = spike_agreement(libs, kind, T, min(B, 64))
    for lib in libs:
        res[lib]["s"] = statistics.median(times[lib])
        res[lib]["ips"] = B / res[lib]["s"]
    return res


def activation_memory(lib: str, kind: str, T: int, B: int) -> int:
    step, _model = make_step(lib, kind, T, B)
    step()
    clear_pool()
    before = heap_in_use()
    if lib == "softspike":
        from softspike.kernels.bitpack import compact_saved_spikes

        with compact_saved_spikes():
            loss = step.forward()  # type: ignore[attr-defined]
    else:
        loss = step.forward()  # type: ignore[attr-defined]
    held = heap_in_use() - before
    loss.backward()
    del loss
    clear_pool()
    return held


def bench_memory(libs: list[str], Ts: list[int], B: int) -> dict[str, dict[int, int]]:
    return {lib: {T: activation_memory(lib, "mlp", T, B) for T in Ts} for lib in libs}


def peak_child(case: str, lib: str) -> None:
    """Run in a fresh process: print the resident-set growth over two training steps."""
    torch.set_num_threads(2)
    kind, T, B = {"lif": ("lif", 50, 256), "mnist8": ("mlp", 8, 128), "mnist50": ("mlp", 50, 256),
                  "conv": ("conv", 8, 32)}[case]
    if lib == "softspike":
        from softspike.kernels import native

        native.load()
    if case == "lif":
        x = (torch.randn(50, 256, 980) * 0.6 + 0.6).requires_grad_()
        g = torch.randn_like(x)
        neuron = peers.make_neuron(lib)

        def step() -> None:
            neuron(x).backward(g)
            x.grad = None
    else:
        step = make_step(lib, kind, T, B)[0]  # type: ignore[assignment]
    gc.collect()
    before = proc_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    step()
    step()
    print("PEAK_KB", proc_kb("VmHWM") - before)


def peak_rss(case: str, lib: str) -> float:
    proc = subprocess.run([sys.executable, __file__, "--peak-child", case, lib], capture_output=True, text=True,
                          check=False, timeout=600)
    m = re.search(r"PEAK_KB (-?\d+)", proc.stdout)
    return int(m.group(1)) / 1024 if m else float("nan")


# -- report -------------------------------------------------------------------------------------


def fmt_mb(b: float) -> str:
    return f"{b / 2**20:.1f}"


def machine() -> str:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{model}, {os.cpu_count()} CPUs, {system}, Python {platform.python_version()}"


def lif_section(out: Callable[[str], None], libs: list[str], res: dict[str, dict[str, float]], T: int, B: int, N: int,
                ratio_cells: Callable[..., tuple[str, str]]) -> None:
    floor = res.pop("_")
    out(f"### LIF layer alone, forward + backward, X [T={T}, B={B}, N={N}] float32")
    out()
    out(f"Memory-traffic floor 4·T·B·N·4 bytes at the measured copy bandwidth "
        f"{floor['bw'] / 1e9:.1f} GB/s: {floor['floor_s'] * 1e3:.1f} ms.")
    out()
    out("| library | ms per call | x floor | softspike speed-up | spike rate | spikes equal to softspike's |")
    out("|---|---:|---:|---:|---:|---:|")
    for lib in libs:
        r = res[lib]
        up = res[lib]["s"] / res["softspike"]["s"] if "softspike" in res else float("nan")
        out(f"| {lib} | {r['s'] * 1e3:.1f} | {r['floor_x']:.1f} | {up:.1f}x | {r['rate']:.3f} | "
            f"{r['agree'] * 100:.3f}% |")
    best, ratio = ratio_cells(res, "s", higher=False)
    out()
    out(f"softspike vs the fastest peer ({best}): **{ratio}**.")
    out()


def mnist_memory_section(out: Callable[[str], None], libs: list[str], peers_: list[str], quick: bool) -> None:
    Ts = [4, 8] if quick else [8, 32, 128]
    Bm = 16 if quick else 128
    mem = bench_memory(libs, Ts, Bm)
    out(f"### Activation memory of one training step, MNIST net, B={Bm}")
    out()
    out("| library | " + " | ".join(f"T={T} (MB)" for T in Ts) + " | slope per time step (KB) | softspike's share |")
    out("|---|" + "---:|" * (len(Ts) + 2))
    slopes = {lib: (mem[lib][Ts[-1]] - mem[lib][Ts[0]]) / (Ts[-1] - Ts[0]) for lib in libs}
    for lib in libs:
        share = slopes["softspike"] / slopes[lib] if "softspike" in slopes and slopes[lib] > 0 else float("nan")
        cells = " | ".join(fmt_mb(mem[lib][T]) for T in Ts)
        out(f"| {lib} | {cells} | {slopes[lib] / 1024:.0f} | {share:.2f} |")
    if "softspike" in slopes and peers_:
        lean = min(peers_, key=slopes.__getitem__)
        out()
        out(f"softspike's slope against the leanest peer ({lean}): **{slopes['softspike'] / slopes[lean]:.2f}**.")
    out()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shapes, one round, no peak RSS, writes nothing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--libs", default=",".join(LIBS))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--only", choices=("peers", "plugins", "conv"), help="run only the cases against the peers, "
                    "only the third-party neuron cases (plugin LIF, Izhikevich), or only the conv cases against the "
                    "peers (speed and activation memory; writes its own section)")
    ap.add_argument("--peak-child", nargs=2, metavar=("CASE", "LIB"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peak_child:
        peak_child(*a.peak_child)
        return
    torch.set_num_threads(a.threads)
    if a.only in (None, "plugins"):
        run_plugin_cases(a)
        if a.only == "plugins":
            return
    libs = peers.available(a.libs.split(","))
    from softspike.core.registry import backend_info

    info = {b["name"]: b for b in backend_info()["backends"]}
    rounds = 1 if a.quick else a.rounds
    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    t_start = time.time()
    versions = ", ".join(f"{lib} {peers.version(lib)}" for lib in libs if lib not in ("plain", "spikingjelly-s"))
    out(f"Machine: {machine()}; torch {torch.__version__}, {a.threads} threads; {versions}.")
    native_status = info["native"]["status"] if "native" in info else "not registered"
    out(f"softspike fused path: {'native' if info.get('native', {}).get('available') else 'torch'} ({native_status}).")
    out()
    peers_ = [lib for lib in libs if lib != "softspike"]

    def ratio_cells(res: dict[str, dict[str, float]], key: str, higher: bool) -> tuple[str, str]:
        if "softspike" not in res or not peers_:
            return "", ""
        vals = {lib: res[lib][key] for lib in peers_}
        best = max(vals, key=vals.__getitem__) if higher else min(vals, key=vals.__getitem__)
        r = res["softspike"][key] / vals[best] if higher else vals[best] / res["softspike"][key]
        return best, f"{r:.2f}x"

    conv_only = a.only == "conv"
    # 1. LIF layer alone
    T, B, N = (10, 64, 980) if a.quick else (50, 256, 980)
    if not conv_only:
        lif_section(out, libs, bench_lif(libs, rounds, T, B, N), T, B, N, ratio_cells)
    peaks: dict[str, dict[str, float]] = {}

    # 2-4. training
    cases = [("mnist8", "mlp", 8, 128, 5), ("mnist50", "mlp", 50, 256, 2), ("conv", "conv", 8, 32, 1),
             ("cifar", "cifar", 4, 16, 1)]
    if a.quick:
        cases = [("mnist8", "mlp", 8, 32, 2), ("conv", "conv", 2, 4, 1), ("cifar", "cifar", 2, 2, 1)]
    titles = {"mnist8": "MNIST net 784-196-10 (LIF, Poisson), training", "mnist50": "MNIST net 784-196-10, training",
              "conv": "Conv SNN (conv 3->64, BN, LIF, conv 64->64, BN, LIF, pool, linear, LIF), training",
              "cifar": "The zoo's cifar10_conv (six conv 256 + BN + LIF, pools, linear, LIF), training"}
    if conv_only:
        cases = [c for c in cases if c[1] in ("conv", "cifar")]
    train_res = {}
    for name, kind, T, B, steps in cases:
        r = bench_train(libs, rounds, kind, T, B, steps)
        train_res[name] = r
        out(f"### {titles[name]}, T={T}, B={B}")
        out()
        out("| library | images/s | softspike speed-up | hidden spike rate | output rate | hidden spikes equal |")
        out("|---|---:|---:|---:|---:|---:|")
        for lib in libs:
            up = r["softspike"]["ips"] / r[lib]["ips"] if "softspike" in r else float("nan")
            out(f"| {lib} | {r[lib]['ips']:.1f} | {up:.2f}x | {r[lib]['rate']:.3f} | {r[lib]['out_rate']:.3f} | "
                f"{r[lib]['agree'] * 100:.3f}% |")
        best, ratio = ratio_cells(r, "ips", higher=True)
        out()
        out(f"softspike vs the fastest peer ({best}): **{ratio}**.")
        out()

    # 5. activation memory against T
    if not conv_only:
        mnist_memory_section(out, libs, peers_, a.quick)

    # 5b. activation memory of the conv cases, per time step
    # 5b. activation memory of the conv cases, per time step
    conv_mem = [("conv", 32, [4, 8]), ("cifar", 16, [2, 4])] if not a.quick else [("conv", 4, [1, 2])]
    out("### Activation memory of one training step, conv cases (MB held after forward)")
    out()
    out("| library | " + " | ".join(f"{kind} T={T}" for kind, _, Ts_ in conv_mem for T in Ts_) + " | "
        + " | ".join(f"{kind} per step (MB)" for kind, _, _ in conv_mem) + " |")
    out("|---|" + "---:|" * sum(len(Ts_) + 1 for _, _, Ts_ in conv_mem))
    per_step: dict[str, dict[str, float]] = {kind: {} for kind, _, _ in conv_mem}
    rows = {lib: [] for lib in libs}
    for kind, Bc, Ts_ in conv_mem:
        for lib in libs:
            held = [activation_memory(lib, kind, T, Bc) for T in Ts_]
            rows[lib] += [fmt_mb(h) for h in held]
            per_step[kind][lib] = (held[-1] - held[0]) / (Ts_[-1] - Ts_[0])
    for lib in libs:
        out(f"| {lib} | " + " | ".join(rows[lib]) + " | "
            + " | ".join(fmt_mb(per_step[kind][lib]) for kind, _, _ in conv_mem) + " |")
    if "softspike" in libs and peers_:
        out()
        for kind, Bc, _ in conv_mem:
            lean = min(peers_, key=per_step[kind].__getitem__)
            out(f"{kind} (B={Bc}): softspike's activation memory per time step against the leanest peer ({lean}): "
                f"**{per_step[kind]['softspike'] / per_step[kind][lean]:.2f}**.")
    out()

    # 6. peak RSS, fresh process each
    if not (a.quick or conv_only):
        out("### Peak resident memory growth over two steps, fresh process per library (MB)")
        out()
        pcases = ["lif", "mnist8", "mnist50", "conv"]
        out("| library | " + " | ".join(pcases) + " |")
        out("|---|" + "---:|" * len(pcases))
        for lib in libs:
            peaks[lib] = {c: peak_rss(c, lib) for c in pcases}
            out(f"| {lib} | " + " | ".join(f"{peaks[lib][c]:.0f}" for c in pcases) + " |")
        out()
    out("Notes on the peers' math: " + "; ".join(f"{lib}: {peers.NOTES[lib]}" for lib in libs) + ".")
    out()
    out(f"Total benchmark time {time.time() - t_start:.0f} s.")
    if a.quick or a.no_write:
        return
    if conv_only:
        write_section("## Conv SNNs against the peers (`run_all.py --only conv`)", [
            f"Command: `python benchmarks/run_all.py --only conv --threads {a.threads}` in `.benchenv` (`make bench` "
            "runs these cases too). The same torch layers on the merged T·B batch for every peer (SpikingJelly: its "
            "own multi-step layer.Conv2d/BatchNorm2d/MaxPool2d), the same weights and data; softspike runs the "
            "network its builder makes (spike-input convs, batch norm fused into the neuron scan). Interleaved "
            f"rounds, medians of {rounds}.", ""], lines)
    else:
        write_docs(lines)


def run_plugin_cases(a: argparse.Namespace) -> list[str]:
    """The third-party neuron cases; writes their own section of docs/benchmarks.md."""
    import plugin_cases

    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    out(f"Machine: {machine()}; torch {torch.__version__}, {a.threads} threads.")
    out()
    t0 = time.time()
    plugin_cases.run(1 if a.quick else a.rounds, a.quick, heap_in_use, clear_pool, out)
    out(f"Total time {time.time() - t0:.0f} s.")
    if not (a.quick or a.no_write):
        write_section(
            "## Third-party neurons (`make bench`, plugin cases)",
            [f"Command: `python benchmarks/run_all.py --only plugins --threads {a.threads}` (also part of "
             "`make bench`). Methods in the docstring of `benchmarks/plugin_cases.py`; medians of "
             f"{a.rounds} rounds, interleaved.", ""],
            lines,
        )
    return lines


def write_docs(lines: list[str]) -> None:
    write_section("## Speed and memory (`make bench`)", [
        "Command: `make bench` (`benchmarks/run_all.py`: builds `.benchenv` with the peers installed "
        "`--no-deps` over this torch, then runs every case for every library in one process, interleaved, "
        "medians of 3 rounds). Methods are in the docstring of `benchmarks/run_all.py`.", "",
        "What softspike runs here: `Neuron(step_mode='m')` with `backend='auto'` takes the compiled kernels",
        "(`softspike.kernels`, C++ built on first use with the system compiler, OpenMP on torch's",
        "own thread pool): forward runs the time loop per block of neurons and saves only X; backward",
        "recomputes H from X in cache and runs BPTT by hand. Where they do not apply (GPU tensors, float64,",
        "ALIF, `reset_grad='straight_through'`, gates that declare no kernel) a tensor-op autograd Function runs;",
        "a third-party dynamics takes them too when it declares a linear charge, else the compiled generic path",
        "(see the plugin cases below). `softspike info` says which.",
        "The MNIST and conv models use `softspike.kernels.spike_linear.SpikeLinear` for layers fed by spikes (sums the",
        "weight columns of the inputs that fired; bits saved for backward), the compiled Poisson sampler,",
        "and `compact_saved_spikes()` (binary tensors autograd saves are kept as bits).",
        "The peers use `nn.Linear` and `torch.rand` encoding; all use the same `nn.Conv2d`/`BatchNorm2d`.", "",
    ], lines)


def write_section(head: str, intro: list[str], lines: list[str], path: Path | None = None) -> None:
    """Replace (or append) the section `head` of docs/benchmarks.md (or of `path`, created if missing)."""
    path = path or ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else ""
    body = "\n".join([head, "", *intro, *lines]).rstrip() + "\n"
    start = text.find(head)
    if start < 0:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + body
    else:
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + body + (text[nxt:] if nxt >= 0 else "")
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
