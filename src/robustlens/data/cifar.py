"""CIFAR-10 (Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, 2009), python pickle batches.

The batches are pickles, and unpickling can run arbitrary code, so they are read with a restricted unpickler that
only rebuilds NumPy arrays and plain containers; anything else in the file is refused.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, CorruptFileError, RobustLensWarning, UnsafeLoadError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
#: The customary per-channel statistics of the CIFAR-10 training set (for ``Classifier(mean=..., std=...)``).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafeLoadError(f"refusing to unpickle {module}.{name}: a CIFAR batch holds only arrays and lists, "
                              "so this file is not a genuine batch (it could run arbitrary code)")


def read_batch(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One CIFAR batch file as a dict with ``str`` keys (``data``, ``labels``, ...), unpickled safely."""
    p = Path(path)
    try:
        d = _ArrayUnpickler(io.BytesIO(p.read_bytes()), encoding="bytes").load()
    except UnsafeLoadError as e:
        raise UnsafeLoadError(f"{p}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise CorruptFileError(f"{p} is not a readable CIFAR batch ({type(e).__name__}: {e}); it is truncated or "
                               "corrupt: delete it and download it again") from e
    if not isinstance(d, dict):
        raise CorruptFileError(f"{p} does not hold a CIFAR batch dict; delete it and download it again")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def batch_folder(root: Path) -> Path:
    """The ``cifar-10-batches-py`` folder under ``root`` (or ``root`` itself when it holds the batches)."""
    for cand in (root, root / "cifar-10-batches-py", root / "cifar10" / "cifar-10-batches-py", root / "cifar10"):
        if (cand / "test_batch").is_file() or (cand / "data_batch_1").is_file():
            return cand
    raise ConfigError(f"cifar10: no cifar-10-batches-py folder with test_batch / data_batch_N under {root}; pass "
                      "root= pointing at it, or download=True to fetch it")


def load_cifar10_arrays(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images ``(N, 3, 32, 32)`` uint8, labels ``(N,)`` and class names of a CIFAR-10 split.

    The training split uses whichever of ``data_batch_1`` .. ``data_batch_5`` exist (warning when some are missing).
    """
    folder = batch_folder(root)
    if split == "test":
        files = [folder / "test_batch"]
        if not files[0].is_file():
            raise ConfigError(f"cifar10: {files[0]} not found; download=True fetches it")
    else:
        files = [folder / f"data_batch_{i}" for i in range(1, 6) if (folder / f"data_batch_{i}").is_file()]
        if not files:
            raise ConfigError(f"cifar10: no data_batch_1..5 in {folder}; download=True fetches them")
        if len(files) < 5:
            warnings.warn(f"cifar10: only {len(files)} of the 5 training batches found in {folder} "
                          f"({', '.join(f.name for f in files)}): the train split has {len(files) * 10000} images "
                          "instead of 50000", RobustLensWarning, stacklevel=3)
    xs, ys = [], []
    for f in files:
        d = read_batch(f)
        data, labels = np.asarray(d.get("data")), np.asarray(d.get("labels"))
        if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
            raise CorruptFileError(f"{f}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape};"
                                   " delete it and download it again")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels.astype(np.int64))
    classes = list(CIFAR10_CLASSES)
    meta = folder / "batches.meta"
    if meta.is_file():
        names = read_batch(meta).get("label_names")
        if names:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return np.concatenate(xs), np.concatenate(ys), classes
