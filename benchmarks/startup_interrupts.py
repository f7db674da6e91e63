#!/usr/bin/env python
"""Ctrl-C during start-up: SIGINT to `python -m softspike info` after a random delay, many times.

Each try starts the command, sleeps a delay drawn uniformly from [--min, --max] seconds, sends
SIGINT (unless the command already ended) and records the exit status, whether stderr holds a
traceback and whether it ends with "interrupted". The promise (docs/reliability.md) is exit 130 and
"interrupted", never a traceback, never a death by SIGINT (-2). Run it with low priority on a
shared machine; the figures depend on the load, so say which load they were measured under:

    nice -n 10 python benchmarks/startup_interrupts.py --tries 100
    nice -n 10 python benchmarks/startup_interrupts.py --tries 100 --src /path/to/older/src
    nice -n 10 python benchmarks/startup_interrupts.py --launcher numpy-first --src ...

`--src` puts another source tree first on PYTHONPATH (to measure a commit before a fix);
`--launcher numpy-first` imports numpy before softspike, under its own KeyboardInterrupt handling,
to measure that remedy on a tree without the held-interrupt start-up.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

NUMPY_FIRST = """
import sys
try:
    import numpy
except KeyboardInterrupt:
    print("softspike: interrupted", file=sys.stderr)
    sys.exit(130)
from softspike.cli import console_main
sys.argv[0] = "softspike"
console_main()
"""

LAUNCHERS = {"module": ["-m", "softspike"], "numpy-first": ["-c", NUMPY_FIRST]}


def one_try(command: list[str], env: dict[str, str], delay: float) -> dict[str, object]:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    signalled = proc.poll() is None
    if signalled:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return {"delay": delay, "signalled": signalled, "code": "hang", "traceback": "Traceback" in err, "tail": ""}
    lines = err.strip().splitlines()
    return {"delay": round(delay, 3), "signalled": signalled, "code": proc.returncode,
            "traceback": "Traceback" in err, "interrupted": bool(lines) and lines[-1].endswith("interrupted"),
            "tail": lines[-1] if lines else ""}


def verdict(row: dict[str, object]) -> str:
    if not row["signalled"]:
        return "finished before the signal"
    if row["code"] == 130 and not row["traceback"] and row["interrupted"]:
        return "130, interrupted (the promise)"
    return f"exit {row['code']}, traceback {'yes' if row['traceback'] else 'no'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tries", type=int, default=100)
    parser.add_argument("--min", type=float, default=0.05, help="shortest delay before SIGINT, seconds")
    parser.add_argument("--max", type=float, default=2.0, help="longest delay before SIGINT, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--src", type=Path, default=SRC, help="source tree put first on PYTHONPATH")
    parser.add_argument("--launcher", choices=sorted(LAUNCHERS), default="module")
    parser.add_argument("--json", type=Path, help="write every try's row here")
    args = parser.parse_args()
    # Started in the background by a shell, this process (and so each command) would ignore SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    path = os.pathsep.join(p for p in (str(args.src), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, *LAUNCHERS[args.launcher], "info"]
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    rows = []
    for i in range(args.tries):
        row = one_try(command, env, rng.uniform(args.min, args.max))
        rows.append(row)
        if verdict(row).startswith("exit"):
            print(f"try {i}: delay {row['delay']} s: {verdict(row)}: {row['tail']}", flush=True)
    counts = collections.Counter(verdict(row) for row in rows)
    print(f"{args.tries} tries, launcher {args.launcher}, src {args.src}, delays {args.min}-{args.max} s, "
          f"{time.monotonic() - t0:.0f} s, load average {os.getloadavg()[0]:.2f} at the end")
    for name, n in counts.most_common():
        print(f"  {n:4d}  {name}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
