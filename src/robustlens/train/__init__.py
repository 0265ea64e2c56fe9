"""Robust training: one loop (:func:`fit`), pluggable objectives and diagnostic callbacks (paper Sec. III-B).

Layout, one idea per module: ``contracts`` (StepContext, Objective, Callback), ``history`` (EpochRecord,
TrainingHistory), ``datasets`` (what the loop trains on), ``checkpoint`` (atomic checkpoints and RNG states),
``warmup`` (the eps ramp), ``trainer`` (the loop), ``fitting`` (:func:`fit`), ``objectives`` (the OBJECTIVES
registry), ``callbacks`` and ``tracker`` (diagnostics), ``evaluate``, ``distributed``.
"""

from .callbacks import (
    CatastrophicOverfittingDetector,
    RobustOverfittingTracker,
    fgsm_accuracy,
    gradient_alignment,
    pgd_accuracy,
)
from .checkpoint import load_checkpoint, save_checkpoint
from .contracts import Callback, Objective, StepContext
from .fitting import fit
from .history import EpochRecord, TrainingHistory
from .objectives import (
    ACET,
    CURE,
    FGSMAT,
    FGSMRS,
    OBJECTIVES,
    PGDAT,
    TRADES,
    DeepFoolAT,
    GaussianAugmentation,
    GradAlign,
    Standard,
    make_objective,
)
from .tracker import MarginTracker, MarginTrackResult, plot_margin_evolution
from .trainer import Trainer
from .warmup import EpsWarmup

__all__ = [
    "ACET",
    "CURE",
    "FGSMAT",
    "FGSMRS",
    "OBJECTIVES",
    "PGDAT",
    "TRADES",
    "Callback",
    "CatastrophicOverfittingDetector",
    "DeepFoolAT",
    "EpochRecord",
    "EpsWarmup",
    "GaussianAugmentation",
    "GradAlign",
    "MarginTrackResult",
    "MarginTracker",
    "Objective",
    "RobustOverfittingTracker",
    "StepContext",
    "Standard",
    "Trainer",
    "TrainingHistory",
    "fgsm_accuracy",
    "fit",
    "gradient_alignment",
    "load_checkpoint",
    "make_objective",
    "pgd_accuracy",
    "plot_margin_evolution",
    "save_checkpoint",
]
