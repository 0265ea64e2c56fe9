"""The verdicts of a report: every section's claims judged on every model's numbers, once all sections have run.

A model's fitness to be judged comes from the gates the sections raise about it (:meth:`Section.gates`: near chance,
gradient-masking flags) and from the sections every verdict needs (:attr:`Section.required_for_verdicts`: the clean
accuracy); then each claim of each section gives its verdicts (:meth:`Claim.judge`). The verdicts are a function of
:class:`~robustlens.report.outcome.ReportResults` alone, so a reloaded ``results.json`` judges the same.
"""

from __future__ import annotations

from .claims import Evidence, Gate, Verdict
from .outcome import STATUS_SKIPPED, STATUS_UNAVAILABLE, ModelReport, ReportResults
from .registry import SECTIONS, section_keys
from .section import get_section


def model_gates(results: ReportResults, model: ModelReport) -> tuple[Gate, ...]:
    """Every reason ``model`` cannot be judged: the gates its sections raise, and the verdict-deciding sections it
    lacks."""
    gates: list[Gate] = []
    for key in section_keys():
        sec = get_section(key)
        o = model.sections.get(key)
        if o is not None and o.ok:
            gates += sec.gates(o.headline, results.data.num_classes)
        elif sec.required_for_verdicts:
            why = (f"the {key!r} section was not run (add it to the sections)" if o is None
                   else f"the {key!r} section did not compute: {o.note}")
            gates.append(Gate(f"has no {sec.title.lower()} ({why}), which decides whether a model can be judged"))
    return tuple(gates)


def judge(results: ReportResults) -> list[Verdict]:
    """The verdict of every claim of every section in the report, in page order (see :mod:`.claims`)."""
    gates = {m.name: model_gates(results, m) for m in results.models}
    out: list[Verdict] = []
    for key in getattr(results.plan, "sections", []):
        if key not in SECTIONS:
            continue
        sec = get_section(key)
        evidence = []
        for m in results.models:
            o = m.sections.get(key)
            evidence.append(Evidence(
                name=m.name, role=m.role, headline=o.headline if o is not None and o.ok else None,
                missing=o.note if o is not None else "not computed",
                skipped=o is not None and o.status in (STATUS_SKIPPED, STATUS_UNAVAILABLE), gates=gates[m.name]))
        for claim in sec.claims:
            out += claim.judge(key, evidence)
    return out


__all__ = ["judge", "model_gates"]
