"""Certification: randomized smoothing (Cohen et al., 2019) and interval bound propagation for small networks."""

from .ibp import IntervalBounds, interval_bounds
from .smoothing import (
    ABSTAIN,
    CertifiedAccuracyCurve,
    CertifyResult,
    Smoothed,
    SmoothedPrediction,
    binomial_two_sided_pvalue,
    certify_dataset,
    clopper_pearson_lower,
)

__all__ = [
    "ABSTAIN",
    "CertifiedAccuracyCurve",
    "CertifyResult",
    "IntervalBounds",
    "Smoothed",
    "SmoothedPrediction",
    "binomial_two_sided_pvalue",
    "certify_dataset",
    "clopper_pearson_lower",
    "interval_bounds",
]
