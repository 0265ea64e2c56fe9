"""The severity parameters of the common corruptions (Hendrycks & Dietterich, "Benchmarking neural network
robustness to common corruptions and perturbations", ICLR 2019), five per corruption, in two published sets:

- ``"imagenet"``: ImageNet-C, as packaged by ``imagecorruptions`` 1.1.2 (Michaelis et al. 2019), whose code also
  scales the size-dependent ones (fog's fractal, elastic's displacement field, frost's crop) to any image size;
- ``"cifar"``: CIFAR-10-C (``make_cifar_c.py`` of the benchmark), written for 32 x 32 images; where that code fixes
  32 we use the image's side.

Grey 28 x 28 images (MNIST-style) use the ``"cifar"`` set: it was written for images of that size, the MNIST-C
benchmark (Mu & Gilmer 2019) is a different corruption suite, and a grey image goes through each corruption's
grey-scale branch of ``imagecorruptions`` (luma in place of colour). ``params="auto"`` picks ``"cifar"`` for images
whose larger side is at most 64 pixels and ``"imagenet"`` otherwise.

>>> severity_params("contrast", 3, "cifar")
0.4
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError

PARAM_SETS = ("imagenet", "cifar")

TABLES: dict[str, dict[str, list[Any]]] = {
    "imagenet": {
        "gaussian-noise": [0.08, 0.12, 0.18, 0.26, 0.38],
        "shot-noise": [60, 25, 12, 5, 3],
        "impulse-noise": [0.03, 0.06, 0.09, 0.17, 0.27],
        "defocus-blur": [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)],
        "glass-blur": [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
        "motion-blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
        "zoom-blur": [(1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02), (1, 1.31, 0.03)],
        "snow": [(0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
                 (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)],
        "frost": [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)],
        "fog": [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)],
        "brightness": [0.1, 0.2, 0.3, 0.4, 0.5],
        "contrast": [0.4, 0.3, 0.2, 0.1, 0.05],
        # alpha of the displacement (x 250), its smoothing sigma (x side), its amplitude (x side); no affine part
        "elastic": [(250 * 0.05, 0.01, 0.005, 0.0), (250 * 0.065, 0.01, 0.005, 0.0), (250 * 0.085, 0.01, 0.005, 0.0),
                    (250 * 0.1, 0.01, 0.005, 0.0), (250 * 0.12, 0.01, 0.005, 0.0)],
        "pixelate": [0.6, 0.5, 0.4, 0.3, 0.25],
        "jpeg": [25, 18, 15, 10, 7],
        "speckle-noise": [0.15, 0.2, 0.35, 0.45, 0.6],
        "gaussian-blur": [1, 2, 3, 4, 6],
        "spatter": [(0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
                    (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1)],
        "saturate": [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)],
    },
    "cifar": {
        "gaussian-noise": [0.04, 0.06, 0.08, 0.09, 0.10],
        "shot-noise": [500, 250, 100, 75, 50],
        "impulse-noise": [0.01, 0.02, 0.03, 0.05, 0.07],
        "defocus-blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
        "glass-blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],
        "motion-blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
        "zoom-blur": [(1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)],
        "snow": [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                 (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)],
        "frost": [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)],
        "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],
        "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
        "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
        # alpha (x side), sigma (x side), affine jitter (x side); uniform(-1, 1) displacement
        "elastic": [(0.0, 0.0, 0.0, 0.08), (0.05, 0.2, 0.0, 0.07), (0.08, 0.06, 0.0, 0.06), (0.1, 0.04, 0.0, 0.05),
                    (0.1, 0.03, 0.0, 0.03)],
        "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
        "jpeg": [80, 65, 58, 50, 40],
        "speckle-noise": [0.06, 0.1, 0.12, 0.16, 0.2],
        "gaussian-blur": [0.4, 0.6, 0.7, 0.8, 1],
        "spatter": [(0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
                    (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1)],
        "saturate": [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)],
    },
}


def resolve_params(params: str, height: int, width: int) -> str:
    """``"imagenet"`` or ``"cifar"``; ``"auto"`` by image size (see the module docstring)."""
    if params == "auto":
        return "cifar" if max(height, width) <= 64 else "imagenet"
    if params not in PARAM_SETS:
        raise ConfigError(f"unknown corruption parameter set {params!r}; choose 'auto', 'imagenet' or 'cifar'")
    return params


def severity_params(name: str, severity: int, params: str) -> Any:
    """The parameter of corruption ``name`` (registry key) at ``severity`` (1..5) in set ``params``."""
    value = TABLES[params][name][severity - 1]
    if name == "zoom-blur":
        return [float(z) for z in np.arange(*value)]  # numpy's arange, as the reference: its float end included
    return value


__all__ = ["PARAM_SETS", "TABLES", "resolve_params", "severity_params"]
