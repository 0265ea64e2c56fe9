"""The robustness report: every analysis of robustlens on one or several models, as ``results.json`` (versioned
schema) and one self-contained ``report.html``, with a verdict on each of the paper's claims the numbers test.

>>> from robustlens.report import ModelEntry, ReportData, ReportPlan, run_report
>>> plan = ReportPlan.preset("quick", input_shape=(1, 28, 28))
>>> results = run_report([ModelEntry("standard", clf)], ReportData("mnist", x, y), plan, "out/")

Sections are registered classes (:class:`Section`, :func:`register_section`), one module per topic in
:mod:`robustlens.report.sections`; :data:`SECTIONS` lists them and :func:`section_keys` gives the page order.
"""

from .build import ModelEntry, model_fingerprint, run_report, run_section, write_outputs
from .claims import (
    FAILS,
    HOLDS,
    UNJUDGED,
    UNTESTED,
    Claim,
    Evidence,
    Gate,
    ModelClaim,
    PairClaim,
    Verdict,
    claims_markdown,
    summary,
)
from .data import ReportData
from .figures import Figure
from .html import render_html
from .judge import judge
from .outcome import (
    REPORT_SCHEMA_VERSION,
    DataSummary,
    ModelReport,
    ReportResults,
    SectionOutcome,
    schema,
    validate_results_json,
)
from .plan import ReportPlan
from .registry import SECTIONS, load_sections, section_keys
from .section import Row, RunContext, Section, get_section, register_section

load_sections()
ALL_SECTIONS: tuple[str, ...] = tuple(section_keys())
"""Every section key in page order (the default of :attr:`ReportPlan.sections`)."""

__all__ = [
    "ALL_SECTIONS",
    "FAILS",
    "HOLDS",
    "REPORT_SCHEMA_VERSION",
    "SECTIONS",
    "UNJUDGED",
    "UNTESTED",
    "Claim",
    "DataSummary",
    "Evidence",
    "Figure",
    "Gate",
    "ModelClaim",
    "ModelEntry",
    "ModelReport",
    "PairClaim",
    "ReportData",
    "ReportPlan",
    "ReportResults",
    "Row",
    "RunContext",
    "Section",
    "SectionOutcome",
    "Verdict",
    "claims_markdown",
    "get_section",
    "judge",
    "load_sections",
    "model_fingerprint",
    "register_section",
    "render_html",
    "run_report",
    "run_section",
    "schema",
    "section_keys",
    "summary",
    "validate_results_json",
    "write_outputs",
]
