"""The `softspike` program's first lines: Ctrl-C is held while the heavy imports run.

Torch imports numpy from C++ (`from torch._C import *`); a KeyboardInterrupt raised inside that
import is swallowed by torch ("Failed to initialize NumPy"), start-up goes on with numpy half
loaded and fails later with an unrelated traceback (`cannot load module more than once per
process`, a RecursionError in numpy's `__getattr__`). So from the program's first line until the
command-line parser is built, SIGINT only records itself; `release()` then raises the
KeyboardInterrupt that `softspike.cli.main` turns into "interrupted" and exit 130.

This module imports only the C-level `_signal`: `signal` itself pulls in `enum` (tens of
milliseconds on a busy machine, an unprotected window). Only the interpreter's own start-up and
`import softspike` (a few milliseconds) come before `hold()`; docs/reliability.md gives the rate.
"""

from __future__ import annotations

import _signal

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs what this module saves
if TYPE_CHECKING:
    from typing import NoReturn

_held: list[int] = []  # the signals that arrived while held
_holding = False


def _record(signum: int, frame: object) -> None:
    _held.append(signum)


def hold() -> None:
    """From now on SIGINT is recorded, not raised; a no-op where SIGINT is ignored or handled by
    someone else (a program started in the background with SIGINT ignored stays so)."""
    global _holding
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _record)
        _holding = True


def raise_held() -> None:
    """Raise KeyboardInterrupt now if Ctrl-C came while held (still holding): lets start-up stop
    between imports instead of after all of them."""
    if _held:
        release()


def release() -> None:
    """Give Ctrl-C back to Python and raise the KeyboardInterrupt that came while held."""
    global _holding
    if _holding:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        _holding = False
    if _held:
        _held.clear()
        raise KeyboardInterrupt


_skip_finalization = False  # set by exit_without_finalizing()


def exit_without_finalizing() -> None:
    """Ask the `softspike` program to end this process without finalising the interpreter (exit
    handlers, other threads and stdio still finish first): a distributed worker calls it once it has
    left its process group, so no C++ object of torch.distributed is destroyed during shutdown."""
    global _skip_finalization
    _skip_finalization = True


def skips_finalization() -> bool:
    return _skip_finalization


def console() -> NoReturn:
    """The console script and `python -m softspike`."""
    hold()
    from softspike.cli import console_main

    console_main()
