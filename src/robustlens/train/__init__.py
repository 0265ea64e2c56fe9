"""Robust training: one loop (:func:`fit`), pluggable objectives and diagnostic callbacks (paper Sec. III-B)."""

from ..geometry.tracker import MarginTracker as MarginTracker  # subspace margins every N epochs (Sec. III-B1)
from .callbacks import (
    CatastrophicOverfittingDetector,
    RobustOverfittingTracker,
    fgsm_accuracy,
    gradient_alignment,
    pgd_accuracy,
)
from .loop import (
    Callback,
    EpochRecord,
    Objective,
    StepContext,
    Trainer,
    TrainingHistory,
    fit,
    load_checkpoint,
    save_checkpoint,
)
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
    "GaussianAugmentation",
    "GradAlign",
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
    "save_checkpoint",
]
