"""The typed results a report is made of: one :class:`SectionOutcome` per (model, section), gathered per model in
:class:`ModelReport` and for the whole page in :class:`ReportResults` (what ``results.json`` holds).

``results.json`` is ``ReportResults.save(...)``: strict JSON for every number, sentence and setting, with the large
arrays (adversarial images, per-sample distances) inside it as compressed base64; ``ReportResults.load`` rebuilds every
object, the computing modules' own result types included. Its layout is fixed by ``report/schema.json``
(:data:`REPORT_SCHEMA_VERSION`); :func:`validate_results_json` checks a file against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..results import Result
from .claims import Verdict

REPORT_SCHEMA_VERSION = 2

STATUS_OK = "ok"
STATUS_UNAVAILABLE = "unavailable"  # the computing module is not part of this version
STATUS_SKIPPED = "skipped"  # not applicable to this model or plan (e.g. certification of an unsmoothed model)
STATUS_ERROR = "error"  # the computation raised; the message is kept
STATUSES = (STATUS_OK, STATUS_UNAVAILABLE, STATUS_SKIPPED, STATUS_ERROR)


@dataclass
class SectionOutcome(Result):
    """One section of one model's report.

    Attributes:
        key: the section key (see :func:`robustlens.report.registry.section_keys`).
        title: the heading shown on the page.
        status: ``"ok"``, ``"unavailable"``, ``"skipped"`` or ``"error"``.
        sentence: one sentence computed from this model's numbers (empty unless ``ok``).
        headline: the numbers the sentence and the headline table quote, by name.
        note: why the section is unavailable / skipped, or why it failed: the cause a user can act on (a constant
            classifier, non-finite logits) when one is found, else the error message.
        detail: for a failed section whose cause was found, the internal error message.
        seconds: wall-clock time the computation took.
        result: the typed result of the computing module (``None`` unless ``ok``).
    """

    key: str
    title: str
    status: str
    sentence: str = ""
    headline: dict[str, float] = field(default_factory=dict)
    note: str = ""
    seconds: float = 0.0
    result: Result | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


@dataclass
class ModelReport(Result):
    """Every section computed for one model.

    Attributes:
        name: the model's display name.
        source: where it came from (zoo name and weights, ``module.py:factory``, or a description).
        num_parameters: trainable parameters.
        sections: the outcomes, by section key, in page order.
        role: ``"standard"``, ``"robust"`` or ``""`` (the claims comparing adversarial training read it).
    """

    name: str
    source: str
    num_parameters: int
    sections: dict[str, SectionOutcome] = field(default_factory=dict)
    role: str = ""


@dataclass
class DataSummary(Result):
    """The evaluation data: its name, how many samples, their shape and range."""

    name: str
    n: int
    input_shape: list[int]
    num_classes: int
    bounds: list[float]
    class_names: list[str] | None = None


@dataclass
class ReportResults(Result):
    """Everything a report shows, as saved in ``results.json``.

    Attributes:
        report_schema: version of the layout in ``report/schema.json``.
        robustlens_version: the package version that wrote it.
        created: ISO-8601 creation time.
        seed: the seed every section used.
        plan: the :class:`~robustlens.report.plan.ReportPlan`.
        data: what was evaluated.
        models: one :class:`ModelReport` per model, the reference model first.
        comparison: per section key, one sentence comparing the models (when there are several).
        environment: torch version, device, threads.
        verdicts: one :class:`~robustlens.report.claims.Verdict` per claim and model (or standard/robust pair), in
            page order.
    """

    report_schema: int
    robustlens_version: str
    created: str
    seed: int
    plan: Result
    data: DataSummary
    models: list[ModelReport]
    comparison: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)


def schema() -> dict[str, Any]:
    """The JSON Schema of ``results.json`` shipped with the package (``robustlens/report/schema.json``)."""
    text = resources.files("robustlens.report").joinpath("schema.json").read_text()
    out = json.loads(text)
    assert isinstance(out, dict)
    return out


def validate_results_json(path: str | Path) -> dict[str, Any]:
    """Validate a ``results.json`` file against :func:`schema` with ``jsonschema``; return the parsed payload.

    Raises ``jsonschema.ValidationError`` when it does not conform and ``ImportError`` (with the install hint) when
    ``jsonschema`` is missing.
    """
    try:
        import jsonschema
    except ImportError as e:  # pragma: no cover - jsonschema is in the dev extra
        raise ImportError("validating results.json needs jsonschema: pip install jsonschema") from e
    payload = json.loads(Path(path).read_text())
    jsonschema.validate(payload, schema())
    assert isinstance(payload, dict)
    return payload


__all__ = [
    "REPORT_SCHEMA_VERSION",
    "STATUSES",
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_SKIPPED",
    "STATUS_UNAVAILABLE",
    "DataSummary",
    "ModelReport",
    "ReportResults",
    "SectionOutcome",
    "schema",
    "validate_results_json",
]
