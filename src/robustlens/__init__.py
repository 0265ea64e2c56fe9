"""robustlens: adversarial robustness as a lens on deep classifiers.

``import robustlens as rl`` loads only the core (the :class:`Classifier`, errors, results); the subpackages load
on first use, ``rl.attacks.DeepFool``, ``rl.metrics.robust_accuracy``, ``rl.geometry``, ``rl.certify``,
``rl.train``, so the import stays fast (docs/design.md, "Public surface").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .classifier import Classifier
from .errors import ConfigError, InputError, LabelError, RobustLensError, RobustLensWarning, UnsafeLoadError
from .results import Result

if TYPE_CHECKING:  # pragma: no cover
    from . import analyses, attacks, certify, data, decision, geometry, metrics, norms, report, train, zoo

__version__ = "0.1.0"

#: Subpackages and modules reachable as attributes of the package, imported on first access.
LAZY = ("analyses", "attacks", "certify", "data", "decision", "geometry", "metrics", "norms", "report", "train",
        "zoo")


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *LAZY])


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
