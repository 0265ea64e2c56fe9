"""The report's choices that several sections share: which attacks measure the distance to the boundary and which
plane a cross-section is drawn on. Every number still comes from the library's public functions
(:func:`robustlens.metrics.evaluate_minimal`, :func:`robustlens.geometry.cross_section`); this module only fixes the
settings, so that two sections asking the same question get the same answer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..attacks.base import MinimalNormAttack
from ..attacks.deepfool import DeepFool
from ..attacks.fmn import FMN
from ..classifier import Classifier
from ..errors import ConfigError
from ..geometry.sections import SectionResult, cross_section
from ..metrics import MinimalNormEvaluation, evaluate_minimal
from .plan import ReportPlan


def minimal_attacks(plan: ReportPlan, p: float) -> list[MinimalNormAttack]:
    """The minimal-norm attacks (eq. 8-9) whose per-sample minimum is the report's distance to the boundary:
    DeepFool and FMN with the plan's iteration counts."""
    return [DeepFool(norm=p, max_iter=plan.deepfool_iter), FMN(norm=p, steps=plan.fmn_steps)]


def boundary_distance(clf: Classifier, x: Tensor, y: Tensor, p: float, plan: ReportPlan, *, seed: int,
                      progress: bool = False) -> tuple[list[MinimalNormEvaluation], Tensor]:
    """Each of :func:`minimal_attacks` over ``(x, y)`` (in batches of ``plan.batch_size``) and, per sample, the
    smallest Lp norm any of them found (float64, ``inf`` where all failed)."""
    evals = [evaluate_minimal(clf, (x, y), a, batch_size=plan.batch_size, seed=seed, progress=progress)
             for a in minimal_attacks(plan, p)]
    return evals, torch.stack([e.norm.double().cpu() for e in evals]).amin(0)


def adversarial_plane(clf: Classifier, x: Tensor, y: Tensor, **kw: Any) -> SectionResult:
    """The cross-section (eq. 6) along the DeepFool normal and a random direction; where DeepFool finds no boundary
    from this input, along the loss gradient instead (the result's ``direction_names`` say which)."""
    try:
        return cross_section(clf, x, y, ("adversarial", "random"), **kw)
    except ConfigError:
        return cross_section(clf, x, y, ("gradient", "random"), **kw)


__all__ = ["adversarial_plane", "boundary_distance", "minimal_attacks"]
