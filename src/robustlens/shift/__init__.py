"""Robustness beyond Lp: common corruptions (Hendrycks & Dietterich, ICLR 2019) and accuracy under them (paper
Sec. IV-C1)."""

from .corruptions import CORRUPTIONS, FAMILIES, SEVERITIES, benchmark_corruptions, corrupt, family
from .robustness import CorruptionResult, corruption_robustness, plot_corruption_heatmap, plot_corruptions
from .worst_case import WorstCaseCorruption, corrupt_at, worst_case_corruption

__all__ = [
    "CORRUPTIONS", "FAMILIES", "SEVERITIES", "CorruptionResult", "benchmark_corruptions", "corrupt",
    "corruption_robustness", "family", "plot_corruption_heatmap", "plot_corruptions", "WorstCaseCorruption",
    "corrupt_at", "worst_case_corruption",
]
