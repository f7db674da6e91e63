"""A checkpoint directory owned by one run at a time.

Before a run trains, `claim_checkpoint_dir` makes sure that nothing it does can destroy someone
else's work or fail late:

- the directory exists and is writable (found now, not after the first epoch);
- it is locked (`fcntl.flock` on DIR/.lock, which the kernel drops when the holder dies, so a
  killed run never leaves a stale lock): a second run into it is refused with the holder's pid;
- temporary files of writers that died mid-write (`.last.pt.tmp-PID` with PID gone) are removed;
- the lock and the checkpoint are never symbolic or hard links (a link planted there would make the
  run write into whatever file it names); new files are written to a fresh temporary file
  (O_EXCL|O_NOFOLLOW) and renamed into place, as SQLite and git do;
- a checkpoint of another spec already there is refused unless `overwrite` (a new run of the
  same spec may start over it, as `--resume` is how one continues it).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
import weakref
from pathlib import Path
from typing import Any

from softspike.train.checkpoint import NOFOLLOW, CheckpointError, load_checkpoint

LOCK_FILE = ".lock"
_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")

try:
    import fcntl
except ImportError:  # Windows: no flock; the directory is then not locked (documented in docs/reliability.md)
    fcntl = None  # type: ignore[assignment]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # alive but another user's; or no such pid at all
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete `.NAME.tmp-PID` files whose writer PID no longer runs; return what was removed."""
    removed = []
    for path in folder.iterdir():
        m = _TMP_RE.match(path.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))) and path.is_file():
            try:
                path.unlink()
                removed.append(path)
            except FileNotFoundError:  # another run cleaned it first
                pass
    return removed


def _refuse(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path} is {what}; softspike never writes through one (it could lead to any file): "
                           "remove it, or give another --checkpoint directory")


def open_plain_file(path: Path, flags: int) -> int:
    """`os.open` that refuses a symbolic link (O_NOFOLLOW, no race), a hard link to another file or
    anything not a regular file: a link planted in a run directory must not make a run write elsewhere."""
    try:
        fd = os.open(path, flags | NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP or path.is_symlink():
            raise _refuse(path, "a symbolic link") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise _refuse(path, "not a regular file" if not stat.S_ISREG(info.st_mode) else
                      f"a hard link ({info.st_nlink} names for one file)")
    return fd


class CheckpointDirLock:
    """An exclusive lock on a checkpoint directory for as long as this object lives (or until `release`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._fd: int | None = None
        fd = open_plain_file(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise CheckpointError(
                    f"{folder} is in use by another run (pid {holder}); wait for it to finish, stop it, or give "
                    "another --checkpoint directory"
                ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        # The lock also goes when this object is collected (an error between claim and training).
        self._finalizer = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        self._finalizer()

    def __enter__(self) -> CheckpointDirLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def claim_checkpoint_dir(folder: Path, checkpoint: str, spec_text: str, resume: bool,
                         overwrite: bool) -> CheckpointDirLock:
    """Create, check, lock and clean `folder` for a run writing `folder/checkpoint` (see the module doc)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):  # the lock file may exist already: try a new file
            pass
        lock = CheckpointDirLock(folder)
    except OSError as err:
        raise CheckpointError(f"checkpoint directory {folder} is not writable: {err.strerror or err}") from None
    remove_stale_temporaries(folder)
    existing = folder / checkpoint
    if existing.is_symlink():  # resuming would read its target, the next save replace the link
        lock.release()
        raise _refuse(existing, "a symbolic link")
    if not resume and not overwrite and existing.exists():
        try:
            stored = json.loads(load_checkpoint(existing).get("spec") or "{}")
        except (CheckpointError, ValueError, TypeError):
            stored = None
        mine = json.loads(spec_text)
        if stored != mine:
            lock.release()
            what = f"network {stored.get('name')!r}" if isinstance(stored, dict) else "an unreadable checkpoint"
            raise CheckpointError(
                f"{existing} holds another spec's run ({what}, this spec is {mine.get('name')!r}); pass --overwrite "
                "to replace it, or give another --checkpoint directory"
            )
    return lock
