"""Checkpoints: written atomically (a temporary file, fsync, then rename), read with weights_only.

A crash at any moment leaves either the previous checkpoint or the new one, never a torn file.
Random-number states are stored as tensors and plain lists so `torch.load(weights_only=True)` reads them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softspike.core.errors import SoftspikeError

FORMAT = "softspike-checkpoint-1"
#: The file a run writes in its checkpoint directory.
CHECKPOINT_FILE = "last.pt"


class CheckpointError(SoftspikeError):
    """A checkpoint that is missing, unreadable or from another network."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold SIGINT back for the duration of the block, then raise KeyboardInterrupt if one came.

    Ctrl-C inside `torch.save` surfaces as a RuntimeError from its C++ writer (not as
    KeyboardInterrupt) and leaves a half-written temporary file; deferring it lets the write finish,
    so an interrupted run ends with "interrupted" (exit 130) and a whole checkpoint, like SQLite's
    commit. Only the main thread can install signal handlers; elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def atomic_write(path: Path, write: Any) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path` (SIGINT deferred)."""
    with deferred_interrupt():
        _atomic_write(path, write)


#: Never write through a link planted in a run directory (SQLite and git open their files the same way).
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _create_new(tmp: Path) -> int:
    """Create `tmp` as a new file (O_EXCL: a file, link or pipe already there is never opened)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_BINARY", 0)
    try:
        return os.open(tmp, flags, 0o666)
    except FileExistsError:  # left by a dead writer whose pid this process reuses, or planted
        os.unlink(tmp)  # removes a link itself, never its target
        return os.open(tmp, flags, 0o666)


def _os_error(err: BaseException) -> OSError | None:
    """The OSError behind `err`: torch's writer turns a failed `write` (a full disk) into a RuntimeError."""
    seen: BaseException | None = err
    while isinstance(seen, RuntimeError):
        seen = seen.__cause__ or seen.__context__
    return seen if isinstance(seen, OSError) else None


def _atomic_write(path: Path, write: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = _create_new(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # the rename replaces a link at `path`, it never writes through one
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        found = _os_error(err)
        if found is not None and found.errno is not None and found.filename is None:  # a full disk: name the file
            raise OSError(found.errno, found.strerror, str(path)) from err
        raise
    _fsync_dir(path.parent)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors, dicts, lists, numbers, strings) to `path` atomically."""
    atomic_write(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors land on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        # torch's weights_only refusal is a page of advice on loading untrusted files anyway; keep its reason
        text = str(err)
        if "WeightsUnpickler error:" in text:
            found = text.split("WeightsUnpickler error:", 1)[1]
            found = found.split("Check the documentation")[0].split("Please use")[0]
            reason = "refused by weights_only loading: " + " ".join(found.split())
        else:
            reason = text.strip().splitlines()[0] if text.strip() else ""
        raise CheckpointError(f"{path}: not a readable softspike checkpoint ({type(err).__name__}: {reason})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a softspike checkpoint (format {FORMAT!r} expected)")
    return state


#: What a training checkpoint holds beside its format tag: key -> (type, what it is). `evaluate`,
#: `predict` and `softspike.load` need the first three; `--resume` needs them all.
SCHEMA: dict[str, tuple[type, str]] = {
    "spec": (str, "the network spec as JSON text"),
    "config": (str, "the training options as JSON text"),
    "model": (dict, "the network's weights (name -> tensor)"),
    "optimizer": (dict, "the optimizer's state"),
    "scheduler": (dict, "the learning-rate schedule's state"),
    "rng": (dict, "the random-number states"),
    "log": (dict, "where the run stands (epoch, step, history)"),
}
INFERENCE_KEYS = ("spec", "config", "model")
LOG_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "epoch": int, "step": int, "loss_sum": (int, float), "correct": int, "seen": int, "history": list,
    "elapsed": (int, float),
}


def tensor_values_problem(name: str, value: torch.Tensor) -> str | None:
    """Why a stored tensor's values are unusable (complex, or holding NaN or inf), or None.

    A NaN weight never lets a neuron reach its threshold (NaN >= V_th is false): the network is
    silent and every sample gets class 0, so such a checkpoint is refused rather than used."""
    if value.is_complex():
        return (f"{name}: complex values ({value.dtype}); a network's weights are real (loading would drop the "
                "imaginary part)")
    if value.is_floating_point() and value.numel():
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            return (f"{name}: {bad:,} of {value.numel():,} values are NaN or infinite (a run that diverged, or a "
                    "damaged file): use an earlier checkpoint or train again")
    return None


def _optimizer_tensors(state: Any) -> list[tuple[str, torch.Tensor]]:
    inner = state.get("state") if isinstance(state, dict) else None
    if not isinstance(inner, dict):
        return []  # a malformed optimizer state is reported when it is restored
    return [(f"optimizer.state.{k}.{n}", v) for k, entry in inner.items() if isinstance(entry, dict)
            for n, v in entry.items() if isinstance(v, torch.Tensor)]


def validate_checkpoint(state: dict[str, Any], path: Path, resume: bool = False) -> dict[str, Any]:
    """Check a loaded checkpoint's structure before anything uses it; CheckpointError names each problem.

    Types and values here: every weight (and, to resume, every optimizer moment) must be real and
    finite. The spec is checked by the spec language and the weights' names and shapes against the
    built network (`load_weights`), where the expected values are known."""
    problems = []
    for key in SCHEMA if resume else INFERENCE_KEYS:
        kind, what = SCHEMA[key]
        if key not in state:
            problems.append(f"{key}: missing ({what})")
        elif not isinstance(state[key], kind):
            problems.append(f"{key}: {what} should be a {kind.__name__}, got {type(state[key]).__name__}")
    for key in ("spec", "config"):
        if isinstance(state.get(key), str):
            try:
                if not isinstance(json.loads(state[key]), dict):
                    problems.append(f"{key}: {SCHEMA[key][1]} should hold a JSON object")
            except (ValueError, RecursionError):
                problems.append(f"{key}: {SCHEMA[key][1]} is not valid JSON")
    if isinstance(state.get("model"), dict):
        bad = [str(k) for k, v in state["model"].items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
        if bad:
            problems.append(f"model: entries {', '.join(bad[:3])} are not named tensors")
        tensors = [(f"model: {k}", v) for k, v in state["model"].items() if isinstance(v, torch.Tensor)]
        if resume:
            tensors += _optimizer_tensors(state.get("optimizer"))
        values = [line for name, v in tensors if (line := tensor_values_problem(name, v)) is not None]
        problems += values[:6] + ([f"... and {len(values) - 6} more"] if len(values) > 6 else [])
    if resume and isinstance(state.get("log"), dict):
        for key, types in LOG_SCHEMA.items():
            if not isinstance(state["log"].get(key), types) or isinstance(state["log"].get(key), bool):
                problems.append(f"log.{key}: missing or not a {getattr(types, '__name__', 'number')}")
    if problems:
        raise CheckpointError(f"{path}: not a usable softspike checkpoint:\n  " + "\n  ".join(problems))
    return state


def load_weights(net: torch.nn.Module, weights: dict[str, Any], path: Path) -> None:
    """`net.load_state_dict(weights)`, after checking every name and shape (CheckpointError names them)."""
    expected = net.state_dict()
    problems = [f"model: {k} is missing" for k in expected if k not in weights]
    problems += [f"model: {k} is not in this network" for k in weights if k not in expected]
    problems += [
        f"model: {k} has shape {list(weights[k].shape)}, the network's is {list(v.shape)}"
        for k, v in expected.items() if k in weights and weights[k].shape != v.shape
    ]
    if problems:
        shown = problems[:6] + ([f"... and {len(problems) - 6} more"] if len(problems) > 6 else [])
        raise CheckpointError(f"{path}: its weights do not fit the network:\n  " + "\n  ".join(shown))
    net.load_state_dict(weights)


def restore_part(path: Path, part: str, apply: Any, *args: Any) -> Any:
    """`apply(*args)`, turning a failure of a malformed checkpoint part into a CheckpointError."""
    try:
        return apply(*args)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"{path}: its {part} cannot be restored ({type(err).__name__}: {err})") from None


def _check_optimizer_state(opt: torch.optim.Optimizer) -> None:
    # load_state_dict takes moments of any shape; the first step would then fail deep in the update.
    for group in opt.param_groups:
        for p in group["params"]:
            for name, value in opt.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != p.shape:
                    raise ValueError(f"{name} has shape {list(value.shape)} for a parameter of shape {list(p.shape)}")


def restore_run(path: Path, state: dict[str, Any], net: torch.nn.Module, opt: torch.optim.Optimizer,
                sched: Any) -> Any:
    """Put a validated checkpoint's weights, optimizer, schedule and random states back; return its log."""
    from softspike.train.progress import TrainLog

    load_weights(net, state["model"], path)
    restore_part(path, "optimizer state", opt.load_state_dict, state["optimizer"])
    restore_part(path, "optimizer state", _check_optimizer_state, opt)
    restore_part(path, "learning-rate schedule", sched.load_state_dict, state["scheduler"])
    log = restore_part(path, "log", TrainLog.from_state, state["log"])
    restore_part(path, "random-number states", set_rng_states, state["rng"])
    return log


def rng_states() -> dict[str, Any]:
    """Every random-number state training draws from: torch (CPU and CUDA), numpy and Python."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # type: ignore[misc]
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_to_tuples(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value
