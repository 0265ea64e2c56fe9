"""Certification: randomized smoothing (Cohen et al., 2019) and bound propagation (IBP, CROWN, alpha-CROWN) on the
model's traced forward."""

from .crown import crown_bounds
from .graph import BoundGraph, trace_bound_graph
from .ibp import interval_bounds
from .problem import IntervalBounds
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
from .verify import METHODS, VerifyResult, verify

__all__ = [
    "ABSTAIN",
    "BoundGraph",
    "CertifiedAccuracyCurve",
    "CertifyResult",
    "IntervalBounds",
    "METHODS",
    "Smoothed",
    "SmoothedPrediction",
    "VerifyResult",
    "binomial_two_sided_pvalue",
    "certify_dataset",
    "clopper_pearson_lower",
    "crown_bounds",
    "interval_bounds",
    "trace_bound_graph",
    "verify",
]
