"""`softspike predict --checkpoint FILE INPUT.npz|IMAGE.png`: the class and output firing rates of each
sample, from the network stored in a checkpoint.

An `.npz` gives samples as its array `x` (or `x_test`, or its only array): [N, *input_shape] or one
sample [*input_shape] (images may leave out a single channel: [N, H, W]). An image file (PNG, JPEG,
...) is one sample: converted to the spec's channels (grey or RGB), resized to its height and
width, scaled to [0, 1].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from softspike.cli.options import device_option, int_option
from softspike.cli.validate import add_limit_options

#: Images beyond this many pixels are refused before decoding (a small file can declare a huge image).
MAX_IMAGE_PIXELS = 50_000_000


def add_parser(sub: Any) -> None:
    p = sub.add_parser("predict", help="classify samples (.npz) or an image with a trained checkpoint")
    p.add_argument("input", metavar="INPUT", help="an .npz file of samples, or an image file (PNG, JPEG, ...)")
    p.add_argument("--checkpoint", required=True, metavar="FILE", help="a checkpoint file, or its directory")
    p.add_argument("--batch-size", type=int_option("test_batch_size"), default=1000)
    p.add_argument("--device", type=device_option, default="cpu")
    p.add_argument("--seed", type=int_option("seed"), default=0, help="seed of the encoder's randomness (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object per sample")
    add_limit_options(p, batch_size=False)
    p.set_defaults(run=run)


def _npz_samples(path: Path, max_memory: int | None) -> np.ndarray:
    from softspike.train.data import DatasetError
    from softspike.train.npz import read_npz

    def choose(names: list[str]) -> list[str]:
        keys: list[str] = [k for k in ("x", "x_test") if k in names] or names
        if len(keys) != 1 and not {"x", "x_test"} & set(keys):
            raise DatasetError(f"{path}: holds arrays {', '.join(keys) or 'none'}; name the samples array 'x'")
        return keys[:1]

    return next(iter(read_npz(path, str(path), choose, max_memory).values()))


def _image_sample(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from softspike.train.data import DatasetError

    if len(shape) != 3 or shape[0] not in (1, 3):
        raise DatasetError(f"{path}: an image needs a spec whose input is [1 or 3, H, W], not {list(shape)}")
    try:
        with Image.open(path) as opened:
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise DatasetError(f"{path}: {opened.width}x{opened.height} pixels is too large an image")
            img = opened.convert("L" if shape[0] == 1 else "RGB")
            if img.size != (shape[2], shape[1]):
                img = img.resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.uint8)
    except DatasetError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None
    return pixels[None] if shape[0] == 1 else pixels.transpose(2, 0, 1)


def read_samples(path: Path, shape: tuple[int, ...], max_memory: int | None = None) -> Any:
    """The samples of INPUT as a float tensor [N, *shape] in the network's scale; an .npz whose
    samples would take more than `max_memory` bytes (default: the machine's memory) is refused unread."""
    import torch

    from softspike.train.data import DatasetError, check_sample_values

    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    x = _npz_samples(path, max_memory) if path.suffix.lower() == ".npz" else _image_sample(path, shape)[None]
    check_sample_values(x, str(path))
    if x.shape == shape:
        x = x[None]
    elif len(shape) == 3 and shape[0] == 1 and x.shape[1:] == shape[1:]:
        x = x[:, None]
    if x.shape[1:] != shape or x.shape[0] == 0:
        raise DatasetError(f"{path}: samples of shape {list(x.shape)} do not fit the network's input {list(shape)}; "
                           "give [N, *input_shape] or one sample")
    t = torch.from_numpy(np.array(x, copy=True, order="C"))  # owned and writable (PIL arrays are read-only)
    return t.float().div_(255.0) if t.dtype == torch.uint8 else t.float()


def run(args: argparse.Namespace) -> int:
    import torch

    from softspike.train.loop import resolve_device
    from softspike.train.trained import load_trained

    trained = load_trained(args.checkpoint)
    shape = tuple(trained.checked.spec.input_shape)
    x = read_samples(Path(args.input), shape, args.max_memory)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    net = trained.net.to(device)
    net.max_memory = args.max_memory  # None: the device's memory
    with torch.no_grad():
        rates = torch.cat([net.spikes(x[i:i + args.batch_size].to(device)).mean(0).cpu()
                           for i in range(0, len(x), args.batch_size)])
    for i, r in enumerate(rates.tolist()):
        cls = int(rates[i].argmax())
        if args.json:
            print(json.dumps({"sample": i, "class": cls, "rates": r}))
        else:
            print(f"sample {i}: class {cls}  rates " + " ".join(f"{v:.3f}" for v in r))
    return 0
