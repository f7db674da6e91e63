"""Data shipped inside softspike: a small MNIST subset for a first run with no network and no download.

`mnist_mini.npz` holds 10,000 training images (every 6th of MNIST's 60,000) and 2,000 test images
(every 5th of its 10,000), uint8 [N, 28, 28] with uint8 labels, written with `numpy.savez_compressed`
(about 1.9 MB). MNIST is by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, under CC BY-SA 3.0:
see README.md beside the file. `python -m softspike.data.mnist_mini` rebuilds it from the original files.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

MNIST_MINI = "mnist_mini.npz"
#: Every STRIDE-th image of MNIST's train and test files makes the subset (all ten classes, ~balanced).
TRAIN_STRIDE, TEST_STRIDE = 6, 5


def mnist_mini_arrays() -> dict[str, np.ndarray]:
    """The embedded subset as arrays x_train [10000, 28, 28], y_train, x_test [2000, 28, 28], y_test (uint8)."""
    with resources.files(__name__).joinpath(MNIST_MINI).open("rb") as f, np.load(f, allow_pickle=False) as arrays:
        return {k: np.asarray(arrays[k]) for k in ("x_train", "y_train", "x_test", "y_test")}


__all__ = ["MNIST_MINI", "TEST_STRIDE", "TRAIN_STRIDE", "mnist_mini_arrays"]
