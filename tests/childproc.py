"""Child processes that a test waits on by events (a line printed, a file appearing), never by a sleep.

On a loaded machine a fixed sleep before a kill lands anywhere; an event does not. Every wait has a
generous overall limit that fails the test (and kills the child's whole session) instead of hanging.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
#: The overall limit of one wait, in seconds: minutes, so only a hang reaches it on a busy machine.
PATIENCE = 600.0


def child_env(**extra: str) -> dict[str, str]:
    """This tree's sources first on the path, one thread per child."""
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def sigint_default() -> None:
    # A suite started in the background by a shell ignores SIGINT, and children inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """`subprocess.Popen` in its own session, with stdout and stderr read line by line as they come."""

    def __init__(self, argv: Sequence[str], env: dict[str, str] | None = None, **popen: Any) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(self.argv, env=child_env() if env is None else env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True, preexec_fn=sigint_default, **popen)
        self.pid = self.proc.pid
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(name,), daemon=True) for name in self.lines]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str) -> None:
        stream = getattr(self.proc, name)
        for line in stream:
            with self._changed:
                self.lines[name].append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def text(self, name: str) -> str:
        with self._changed:
            return "".join(self.lines[name])

    def wait_until(self, event: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
        """Return once `event()` holds (checked on every line the child prints and at least every
        20 ms, for files); fail the test if the child ends first or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not event():
                if self.proc.poll() is not None and not any(r.is_alive() for r in self._readers):
                    break  # ended, and every line it printed has been read
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(0.02, left))
            else:
                return
        if self.proc.poll() is not None:
            code, _, err = self.finish()
            pytest.fail(f"{what}: the child ended first (exit {code}):\n{err[-3000:]}")
        self.kill()
        pytest.fail(f"{what}: not within {timeout:.0f} s:\n{self.text('stderr')[-3000:]}")

    def wait_for_line(self, name: str, pattern: str, timeout: float = PATIENCE) -> str:
        """The first line of `name` ("stdout"/"stderr") matching the regular expression `pattern`."""
        regex = re.compile(pattern)
        found: list[str] = []

        def seen() -> bool:
            found[:] = [line for line in self.lines[name] if regex.search(line)][:1]
            return bool(found)

        self.wait_until(seen, f"a line matching {pattern!r} on {name}", timeout)
        return found[0]

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = PATIENCE) -> tuple[int, str, str]:
        """Wait for the end: (exit status, stdout, stderr); a child still running after `timeout` fails the test."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{' '.join(self.argv)} did not end within {timeout:.0f} s:\n{self.text('stderr')[-3000:]}")
        for reader in self._readers:
            reader.join(timeout=60)
        return code, self.text("stdout"), self.text("stderr")

    def kill(self) -> None:
        """SIGKILL the child's whole session (torchrun's workers included)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
