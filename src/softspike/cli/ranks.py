"""Errors of the processes torchrun (or `softspike train --nproc`) starts: said once, and named in
torchrun's own report.

Every process of a job runs the same command line on the same files, so an error found before the
processes meet (an argument, the spec, the plan, the dataset) is met alike by all of them. Rank 0
prints it; the others wait quietly for the launcher, which stops the whole job as soon as one process
has failed. Each failing process also writes its message to the file torchrun names in
``TORCHELASTIC_ERROR_FILE``: torchrun reads a failure's message from there, so the "Root Cause" at
the end of its ``ChildFailedError`` report says ``softspike train: error: ...`` instead of "To enable
traceback see: ...". (torchrun's own traceback above that report and its exit status 1 are torchrun's:
a process it starts cannot change them. `softspike train --nproc N` runs the same launcher in-process,
checks the command line before it starts anything, and reports in one line.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import NoReturn

#: The variable through which torch's elastic agent tells each process where to write its error.
ERROR_FILE_ENV = "TORCHELASTIC_ERROR_FILE"
#: Seconds a quiet rank waits for the launcher to stop it. One still running after that met an error
#: of its own (a stage file only it reads): it prints the error and exits by itself.
QUIET_WAIT_S = 30.0


def launched_rank() -> int | None:
    """This process's rank in a job (torchrun, torch's elastic launcher, or a scheduler that sets RANK
    and WORLD_SIZE as they do); None outside one."""
    rank = os.environ.get("RANK")
    if rank is None or not rank.isdigit() or "WORLD_SIZE" not in os.environ:
        return None
    return int(rank)


def record(message: str) -> None:
    """Write `message` where torchrun reads this process's failure from (if it asked for one)."""
    path = os.environ.get(ERROR_FILE_ENV)
    if not path:
        return
    data = {"message": {"message": message, "extraInfo": {"py_callstack": message, "timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as f:
            json.dump(data, f)
    except OSError:  # the report loses its root-cause line; the error itself is still said on stderr
        pass


def fail(message: str, code: int, usage: str = "") -> int:
    """Report an error every process of the job meets alike; returns `code` (the exit status).

    Outside a job, or on rank 0: `usage` and `message` on stderr, and the message recorded for
    torchrun. On the other ranks of a job torch's elastic agent runs: nothing, until the agent stops
    this process (rank 0 failed too) or `QUIET_WAIT_S` passes (the error was this rank's alone: said
    then, with the rank). On other ranks outside an agent (a test setting RANK): nothing."""
    rank = launched_rank()
    if not rank:
        print(f"{usage}{message}", file=sys.stderr, flush=True)
        record(message)
        return code
    if "TORCHELASTIC_RUN_ID" in os.environ:
        threading.Event().wait(QUIET_WAIT_S)  # the agent's SIGTERM ends this process here
        message = f"{message} (rank {rank})"
        print(message, file=sys.stderr, flush=True)
        record(message)
    return code


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, except that in a job a usage error is said once (rank 0); every process
    still exits 2. Subcommand parsers are of the same class (argparse makes them so)."""

    def error(self, message: str) -> NoReturn:
        sys.exit(fail(f"{self.prog}: error: {message}", 2, self.format_usage()))


__all__ = ["QUIET_WAIT_S", "ArgumentParser", "fail", "launched_rank", "record"]
