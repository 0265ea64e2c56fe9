"""Every analysis entry point on a :class:`~robustlens.Classifier`, by name: the one list that the hostile-model
tests, the command line and the report enumerate, so that a new analysis is covered the moment it registers.

An analysis registers its public function where it is defined::

    @register_analysis("noise-robustness", kind="geometry", smoke=lambda clf, x, y, seed: ...)
    def noise_robustness(clf, x, y, *, sigmas=..., seed=0) -> NoiseResult: ...

``smoke`` runs the function with the smallest settings that still exercise its whole computation on a few samples
(``x`` of shape ``(n, *input_shape)`` in the classifier's bounds, labels ``y``); the tests call it on models built
to break assumptions (non-finite logits or gradients, stochastic, one class, low precision) and require a clear
error or a correct result. Attacks are covered through :data:`robustlens.attacks.ATTACKS` instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import Tensor

from .registry import Registry

F = TypeVar("F", bound=Callable[..., Any])
SmokeFn = Callable[[Any, Tensor, Tensor, int], Any]

#: Subpackages whose modules register analyses; :func:`load_all` imports them.
PACKAGES = ("attacks", "metrics", "geometry", "certify", "train", "features", "explain", "shift")


@dataclass(frozen=True)
class Analysis:
    """One registered entry point.

    Attributes:
        fn: the public function.
        smoke: ``(clf, x, y, seed) -> result``: the function at its smallest settings.
        kind: its area (``"attack"``, ``"metrics"``, ``"geometry"``, ``"certify"``, ``"features"``, ...).
        needs_gradients: whether it differentiates the model (a model with no gradient path must get a clear error).
        summary: one line for listings.
    """

    fn: Callable[..., Any]
    smoke: SmokeFn
    kind: str
    needs_gradients: bool = True
    summary: str = ""


ANALYSES: Registry[Analysis] = Registry("analysis")


def register_analysis(name: str, *, smoke: SmokeFn, kind: str, needs_gradients: bool = True,
                      summary: str = "") -> Callable[[F], F]:
    """Decorator: register the decorated function as analysis ``name`` and return it unchanged."""

    def deco(fn: F) -> F:
        doc = (fn.__doc__ or "").strip().splitlines()
        ANALYSES.add(name, Analysis(fn, smoke, kind, needs_gradients, summary or (doc[0] if doc else "")))
        return fn

    return deco


def load_all() -> Registry[Analysis]:
    """Import every subpackage that registers analyses (those not part of this version are skipped) and return
    :data:`ANALYSES`."""
    for pkg in PACKAGES:
        try:
            importlib.import_module(f"robustlens.{pkg}")
        except ModuleNotFoundError as e:
            if e.name != f"robustlens.{pkg}":
                raise
    return ANALYSES


__all__ = ["ANALYSES", "PACKAGES", "Analysis", "load_all", "register_analysis"]
