"""Robustness beyond Lp: common corruptions (Hendrycks & Dietterich, ICLR 2019) and accuracy under them (paper
Sec. IV-C1)."""

from .corruptions import CORRUPTIONS, FAMILIES, SEVERITIES, benchmark_corruptions, corrupt, family

__all__ = ["CORRUPTIONS", "FAMILIES", "SEVERITIES", "benchmark_corruptions", "corrupt", "family"]
