"""Event-camera and audio spike datasets through tonic, as frames [N, T, ...] that the frames encoder reads.

    --dataset tonic:NMNIST                      T frames per recording, T = the spec's (tonic's n_time_bins)
    --dataset tonic:DVSGesture,downsample=0.25  the sensor scaled down first (tonic's Downsample)
    --dataset tonic:SHD,time_window=10000       frames of 10 ms from the first event; the first T kept
    --dataset tonic:NMNIST,event_count=300      frames of 300 events each; the first T kept
    --dataset tonic:NMNIST,n_event_bins         T frames with equal numbers of events

Framing is tonic's `ToFrame` (counts of events per pixel and polarity in each slice), so one frame
holds integers >= 0. Recordings with fewer than T frames (time_window, event_count) are padded with
empty frames. The frames of each split are cached once, beside tonic's files, in
ROOT/<Name>/softspike-frames/<split>-<framing>.npz, and later runs read that cache.
Shapes: a camera of W x H pixels and P polarities gives samples [T, P, H, W]; a 1-D sensor
(SHD's 700 channels) gives [T, channels].
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softspike.core.extras import require
from softspike.train.checkpoint import atomic_write
from softspike.train.data import ArraySplit, Dataset, DatasetError
from softspike.train.npz import read_npz

#: tonic's dataset classes that softspike frames (each has a train and a test split).
SUPPORTED = ("NMNIST", "DVSGesture", "SHD")
SLICINGS = ("n_time_bins", "n_event_bins", "time_window", "event_count")
BINS = ("n_time_bins", "n_event_bins")  # slicings into a fixed number of frames: T
CACHE_DIR = "softspike-frames"


@dataclass(frozen=True)
class Framing:
    """How recordings become T frames: a tonic ToFrame slicing (None: T bins) and a spatial factor."""

    name: str
    slicing: str = "n_time_bins"
    value: float | None = None
    downsample: float = 1.0

    def key(self, T: int) -> str:
        """The cache file's name part: everything the frames depend on."""
        parts = [f"T{T}", self.slicing if self.value is None else f"{self.slicing}{self.value:g}"]
        if self.downsample != 1.0:
            parts.append(f"ds{self.downsample:g}")
        return "-".join(parts)


def parse_name(dataset: str) -> Framing:
    """`tonic:NAME[,option=value...]` -> Framing; options: one slicing of SLICINGS, downsample."""
    where = f"--dataset {dataset}"
    name, *options = dataset.removeprefix("tonic:").split(",")
    if name not in SUPPORTED:
        close = difflib.get_close_matches(name, SUPPORTED, n=1, cutoff=0.5)
        hint = f" (did you mean tonic:{close[0]}?)" if close else ""
        raise DatasetError(f"{where}: unknown tonic dataset {name!r}{hint}; softspike frames {', '.join(SUPPORTED)}")
    framing = Framing(name)
    given: dict[str, float] = {}
    for option in options:
        key, eq, text = option.partition("=")
        if key not in (*SLICINGS, "downsample"):
            raise DatasetError(f"{where}: unknown option {key!r}; give one of {', '.join(SLICINGS)} or downsample")
        if key in BINS and not eq:  # the number of bins is the spec's T
            given[key] = 0.0
            continue
        try:
            value = float(text)
        except ValueError:
            raise DatasetError(f"{where}: {key} needs a number, as in {key}=1000 (got {text!r})") from None
        if not value > 0 or not np.isfinite(value) or (key == "downsample" and value > 1):
            raise DatasetError(f"{where}: {key} must be {'in (0, 1]' if key == 'downsample' else '> 0'}, got {text}")
        given[key] = value
    slicing = [k for k in given if k in SLICINGS]
    if len(slicing) > 1:
        raise DatasetError(f"{where}: give one way of slicing, not {' and '.join(slicing)}")
    if slicing:
        framing = Framing(name, slicing[0], given[slicing[0]])
    return Framing(framing.name, framing.slicing, framing.value, given.get("downsample", 1.0))


def _tonic_class(tonic: Any, name: str, download: bool, root: Path) -> type:
    """tonic's class; without --download, a subclass (same name, so same folder) whose download refuses."""
    cls: type = getattr(tonic.datasets, name)
    if download:
        return cls

    def refuse(self: Any) -> None:
        raise DatasetError(
            f"tonic:{name}: not found in {Path(self.location_on_system)} (expected tonic's files there, e.g. "
            f"{self.filename} unpacked); pass --download to fetch it into {root}, or put a copy there"
        )

    return type(name, (cls,), {"download": refuse, "__module__": __name__})


def _to_frames(framing: Framing, sensor: tuple[int, ...], T: int, tonic: Any) -> tuple[Any, tuple[int, ...]]:
    """tonic transforms from events to exactly T frames, and the sample shape they give."""
    tt = tonic.transforms
    steps: list[Any] = []
    if framing.downsample != 1.0:
        steps.append(tt.Downsample(spatial_factor=framing.downsample))
        # tonic scales integer coordinates and truncates: pixel W - 1 lands on int((W - 1) * factor)
        sensor = tuple(int((s - 1) * framing.downsample) + 1 if i < 2 else s for i, s in enumerate(sensor))
    if framing.slicing in BINS:
        steps.append(tt.ToFrame(sensor_size=sensor, **{framing.slicing: T}))
    else:
        value = framing.value if framing.slicing == "time_window" else int(framing.value or 1)
        steps.append(tt.ToFrame(sensor_size=sensor, include_incomplete=True, **{framing.slicing: value}))
    width, height, polarities = sensor
    shape = (T, width) if height == 1 and polarities == 1 else (T, polarities, height, width)
    return tt.Compose(steps), shape


def _frame_split(ds: Any, transform: Any, shape: tuple[int, ...], label: str) -> tuple[np.ndarray, np.ndarray]:
    T = shape[0]
    x = np.zeros((len(ds), *shape), dtype=np.int16)
    y = np.zeros(len(ds), dtype=np.int64)
    print(f"softspike: framing {label} ({len(ds)} recordings) once; later runs read the cache", file=sys.stderr)
    for i in range(len(ds)):
        events, target = ds[i]
        frames = np.asarray(transform(events))[:T] if len(events) else np.zeros((0, *shape[1:]))
        x[i, : len(frames)] = frames.reshape(len(frames), *shape[1:])  # fewer than T frames: the rest stay empty
        y[i] = int(np.asarray(target).reshape(-1)[0])
    return x, y


def _split(framing: Framing, root: Path, download: bool, T: int, train: bool,
           max_memory: int | None) -> ArraySplit:
    split = "train" if train else "test"
    cache = root / framing.name / CACHE_DIR / f"{split}-{framing.key(T)}.npz"
    if not cache.is_file():
        tonic = require("tonic", "data", f"tonic:{framing.name}")
        cls = _tonic_class(tonic, framing.name, download, root)
        try:
            ds = cls(str(root), train=train)
            transform, shape = _to_frames(framing, tuple(ds.sensor_size), T, tonic)
            x, y = _frame_split(ds, transform, shape, f"tonic:{framing.name} {split}")  # reads each recording
        except DatasetError:
            raise
        except Exception as err:  # tonic's download and readers raise many kinds
            raise DatasetError(f"tonic:{framing.name}: cannot read or fetch it in {root} "
                               f"({type(err).__name__}: {err})") from None
        atomic_write(cache, lambda f: np.savez(f, x=x, y=y))
    try:
        arrays = read_npz(cache, cache.name, lambda names: ("x", "y"), max_memory)
    except DatasetError as err:  # a damaged or foreign cache file; pickled (object) arrays are refused
        raise DatasetError(f"tonic:{framing.name}: the frame cache {cache} is not readable ({err}); delete it to "
                           "frame the data again") from None
    return ArraySplit(torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"]))


def load_tonic(dataset: str, root: str | Path, download: bool, T: int | None,
               max_memory: int | None = None) -> Dataset:
    """`tonic:NAME[,options]` as frames [N, T, ...] (int16 event counts) for a spec with T steps."""
    framing = parse_name(dataset)
    if T is None:
        raise DatasetError(f"--dataset {dataset}: framing needs the number of time steps T (the spec's T)")
    if framing.slicing in BINS and framing.value not in (None, 0.0, T):
        raise DatasetError(f"--dataset {dataset}: {framing.slicing} is the number of frames, which is the spec's "
                           f"T = {T}; leave the number out ({framing.slicing}) or change the spec's T")
    if framing.slicing in BINS:
        framing = Framing(framing.name, framing.slicing, None, framing.downsample)
    root = Path(root)
    return Dataset(dataset, _split(framing, root, download, T, True, max_memory),
                   _split(framing, root, download, T, False, max_memory))


__all__ = ["SUPPORTED", "Framing", "load_tonic", "parse_name"]
