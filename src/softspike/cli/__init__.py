"""The `softspike` command line. Each subcommand lives in its own module in this package and
provides `add_parser(subparsers)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from softspike import _console
from softspike.cli.ranks import ArgumentParser

#: Subcommand modules, in the order `softspike --help` lists them.
COMMANDS = (
    "info", "plugins", "check", "validate", "schema", "summary", "train", "evaluate", "predict", "plot", "nir", "plan",
)


def build_parser() -> argparse.ArgumentParser:
    # Under torchrun every process parses the same command line: a usage error is said once (rank 0).
    parser = ArgumentParser(prog="softspike", description="Spiking neural networks in PyTorch.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"softspike.cli.{name}")
        _console.raise_held()  # Ctrl-C held by the program stops start-up between imports
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors are one line on stderr and exit 1, Ctrl-C at any moment exit 130."""
    try:  # building the parser imports torch: seconds in which Ctrl-C must not print a traceback
        from softspike.core.errors import SoftspikeError

        try:
            parser = build_parser()
        finally:  # the program held Ctrl-C over the imports (softspike/_console.py): raised here
            _console.release()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("softspike: interrupted", file=sys.stderr)
        return 130
    try:
        code: int = args.run(args)
    except SoftspikeError as err:
        print(f"softspike {args.command}: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `softspike plugins | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"softspike {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


def console_main() -> NoReturn:
    """The `softspike` program (entered through `softspike._console.console`, which holds Ctrl-C
    first): `main()`, then its exit status, 130 included.

    An interrupt that lands while a C extension runs Python code through `PyRun_*` during an import
    (torch's start-up does) is remembered by CPython as unhandled even though `main` handled it, and
    the interpreter would then kill itself with SIGINT at exit (status -2, not 130). So after an
    interrupt the exit handlers run and the process exits 130 directly. A distributed worker that has
    left its process group ends the same way, after its threads (`_console.exit_without_finalizing`)."""
    _console.hold()  # a no-op after `console`; holds for a console script of an older install
    code = main()
    if code == 130 or _console.skips_finalization():
        if code != 130:  # an interrupted program does not wait for its threads
            for thread in threading.enumerate():  # what the interpreter's shutdown would wait for
                if thread is not threading.current_thread() and not thread.daemon:
                    thread.join()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console_main()
