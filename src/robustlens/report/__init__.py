"""The robustness report: every analysis of robustlens on one or several models, as ``results.json`` (versioned
schema) and one self-contained ``report.html``.

>>> from robustlens.report import ModelEntry, ReportData, ReportPlan, run_report
>>> plan = ReportPlan.preset("quick", input_shape=(1, 28, 28))
>>> results = run_report([ModelEntry("standard", clf)], ReportData("mnist", x, y), plan, "out/")
"""

from .build import ModelEntry, model_fingerprint, run_report, run_section, write_outputs
from .html import render_html
from .outcome import (
    REPORT_SCHEMA_VERSION,
    DataSummary,
    ModelReport,
    ReportResults,
    SectionOutcome,
    schema,
    validate_results_json,
)
from .plan import ALL_SECTIONS, ReportPlan
from .sections import SECTIONS, CleanAccuracy, ReportData, SectionSpec

__all__ = [
    "ALL_SECTIONS",
    "REPORT_SCHEMA_VERSION",
    "SECTIONS",
    "CleanAccuracy",
    "DataSummary",
    "ModelEntry",
    "ModelReport",
    "ReportData",
    "ReportPlan",
    "ReportResults",
    "SectionOutcome",
    "SectionSpec",
    "model_fingerprint",
    "render_html",
    "run_report",
    "run_section",
    "schema",
    "validate_results_json",
    "write_outputs",
]
