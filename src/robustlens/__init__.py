"""robustlens: adversarial robustness as a lens on deep classifiers.

``import robustlens as rl`` loads only the core (the :class:`Classifier`, errors, results); the subpackages load
on first use, ``rl.attacks.DeepFool``, ``rl.metrics.robust_accuracy``, ``rl.geometry``, ``rl.certify``,
``rl.train``, so the import stays fast (docs/design.md, "Public surface"). ``rl.Classifier``, ``rl.Result`` and
``rl.benchmark`` load on first use too, so that importing the package does not import torch: the command line
(``robustlens.cli``) sets the OpenMP wait policy before torch starts its threads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InputError, LabelError, RobustLensError, RobustLensWarning, UnsafeLoadError

if TYPE_CHECKING:  # pragma: no cover
    from . import analyses, attacks, certify, data, decision, geometry, metrics, norms, report, train, zoo
    from .benchmarking import benchmark
    from .classifier import Classifier
    from .results import Result

__version__ = "0.1.0"

#: Subpackages and modules reachable as attributes of the package, imported on first access.
LAZY = ("analyses", "attacks", "certify", "data", "decision", "geometry", "metrics", "norms", "report", "train",
        "zoo")
#: Names reachable as attributes of the package, each imported from its module on first access.
LAZY_NAMES = {"Classifier": "classifier", "Result": "results", "benchmark": "benchmarking"}


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    if name in LAZY_NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{LAZY_NAMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY, *LAZY_NAMES})


__all__ = [
    "Classifier",
    "ConfigError",
    "InputError",
    "LabelError",
    "Result",
    "RobustLensError",
    "RobustLensWarning",
    "UnsafeLoadError",
    "__version__",
    "analyses",
    "attacks",
    "benchmark",
    "certify",
    "data",
    "decision",
    "geometry",
    "metrics",
    "norms",
    "report",
    "train",
    "zoo",
]
