"""The HTML page of a report: one self-contained file (inline CSS, figures as data URIs, no scripts, no network).

The page is a function of :class:`~robustlens.report.outcome.ReportResults` only, so a reloaded ``results.json``
renders the same page. The header states the data, the threat model and how many of the paper's claims hold; the
headline table gives the quoted numbers (with their eps and sigma) and the claims table one verdict per claim and
model or pair. Sections keep the plan's order; each starts with the sentence comparing the models, then one
sentence per model, the verdicts of its claims, and the figures.
"""

from __future__ import annotations

import html
import warnings
from importlib import resources

from .claims import FAILS, HOLDS, UNJUDGED, Verdict, summary
from .figures import Figure, style
from .outcome import STATUS_ERROR, STATUS_OK, STATUS_UNAVAILABLE, ReportResults
from .plan import ReportPlan
from .registry import SECTIONS
from .section import get_section
from .text import fmt

VERDICT_CLASS = {HOLDS: "holds", FAILS: "fails", UNJUDGED: "unjudged"}


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _css() -> str:
    return resources.files("robustlens.report").joinpath("style.css").read_text()


def _plan(results: ReportResults) -> ReportPlan:
    if not isinstance(results.plan, ReportPlan):
        raise TypeError(f"the report's plan is a {type(results.plan).__name__}, not a ReportPlan")
    return results.plan


def headline_rows(results: ReportResults) -> list[tuple[str, list[str | None]]]:
    """The headline table: ``(label, [cell per model])`` for every row a section declares that some model has; the
    labels state the threat model (``"robust accuracy at Linf eps 0.1"``), a cell is ``None`` where a model has no
    number."""
    plan = _plan(results)
    rows = []
    for key in plan.sections:
        if key not in SECTIONS:
            continue
        for row in get_section(key).rows:
            cells: list[str | None] = []
            for m in results.models:
                o = m.sections.get(key)
                v = o.headline.get(row.key) if o is not None and o.ok else None
                cells.append(None if v is None else fmt(v, row.kind))
            if any(c is not None for c in cells):
                rows.append((row.text(plan), cells))
    return rows


def headline_table(results: ReportResults) -> str:
    """The table of headline numbers: one row per quoted number, one column per model."""
    rows = headline_rows(results)
    if not rows:
        return ""
    body = "".join(f"<tr><td>{_e(label)}</td>" + "".join(f"<td>{'&ndash;' if c is None else _e(c)}</td>"
                                                          for c in cells) + "</tr>" for label, cells in rows)
    head = "<tr><th></th>" + "".join(f"<th>{_e(m.name)}</th>" for m in results.models) + "</tr>"
    return f'<table class="headline"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _badge(v: Verdict) -> str:
    return f'<span class="badge {VERDICT_CLASS.get(v.status, "untested")}">{_e(v.status)}</span>'


def claims_table(results: ReportResults) -> str:
    """One row per verdict: the claim, where the paper makes it, the model or pair, the numbers, the verdict."""
    rows = []
    for v in results.verdicts:
        why = v.measured if v.status in (HOLDS, FAILS) else v.reason
        rows.append(f'<tr class="verdict {VERDICT_CLASS.get(v.status, "untested")}"><td>{_e(v.statement)}</td>'
                    f"<td>{_e(v.paper)}</td><td>{_e(v.subject)}</td><td>{_e(why)}</td><td>{_badge(v)}</td></tr>")
    if not rows:
        return ""
    head = "<tr><th>the paper's claim</th><th>paper</th><th>model(s)</th><th>measured</th><th>verdict</th></tr>"
    return (f'<table class="claims"><caption>{_e(summary(results.verdicts))}</caption><thead>{head}</thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _figures_html(figs: list[Figure]) -> str:
    parts = []
    for f in figs:
        size = f' width="{f.width}" height="{f.height}"' if f.width and f.height else ""
        parts.append(f'<figure><img src="{f.uri}"{size} alt="{_e(f.caption)}"><figcaption>{_e(f.caption)}'
                     "</figcaption></figure>")
    return '<div class="figs">' + "".join(parts) + "</div>" if parts else ""


def render_section(results: ReportResults, key: str) -> str:
    """The HTML of one section: heading, comparison sentence, per-model sentences or notes, verdicts, figures."""
    sec = get_section(key)
    plan = _plan(results)
    outcomes = [(m.name, m.sections.get(key)) for m in results.models]
    head = f'<h2>{_e(sec.title)}<span class="paper">{_e(sec.paper)}</span></h2>'
    present = [(n, o) for n, o in outcomes if o is not None]
    if not present or all(o.status == STATUS_UNAVAILABLE for _, o in present):
        note = present[0][1].note if present else "not available in this version"
        return f'<section id="{_e(key)}">{head}<p class="note">{_e(note)}</p></section>'
    body = [head]
    comp = results.comparison.get(key)
    if comp:
        body.append(f'<p class="compare">{_e(comp)}</p>')
    items = []
    for name, o in present:
        who = f'<span class="model">{_e(name)}:</span> '
        if o.status == STATUS_OK:
            items.append(f"<li>{who}{_e(o.sentence)}</li>")
        elif o.status == STATUS_ERROR:
            detail = (f'<details><summary>details</summary><code>{_e(o.detail)}</code></details>' if o.detail
                      else "")
            items.append(f'<li>{who}<span class="error">this section failed: {_e(o.note)}</span>{detail}</li>')
        else:
            items.append(f'<li>{who}<span class="note">{_e(o.note)}</span></li>')
    body.append('<ul class="sentences">' + "".join(items) + "</ul>")
    verdicts = [v for v in results.verdicts if v.section == key]
    if verdicts:
        body.append('<ul class="verdicts">' + "".join(
            f'<li class="verdict {VERDICT_CLASS.get(v.status, "untested")}">{_badge(v)} {_e(v.sentence)}</li>'
            for v in verdicts) + "</ul>")
    named = [(n, o.result) for n, o in present
             if o.status == STATUS_OK and o.result is not None and isinstance(o.result, sec.result_type)]
    if named:
        try:
            with style():
                figs = sec.figures(named, plan)
        except Exception as e:  # noqa: BLE001 - a figure bug must not lose the numbers
            warnings.warn(f"figures of section {key!r} failed: {type(e).__name__}: {e}", stacklevel=2)
            body.append(f'<p class="error">the figures of this section could not be drawn: {_e(e)}</p>')
        else:
            body.append(_figures_html(figs))
    return f'<section id="{_e(key)}">' + "".join(body) + "</section>"


def render_html(results: ReportResults, *, progress: bool = False) -> str:
    """The complete, self-contained report page (``progress``: a tqdm bar over the sections as their figures are
    drawn)."""
    from tqdm.auto import tqdm

    plan = _plan(results)
    d = results.data
    models = ", ".join(f"{m.name} ({m.source or 'given'}{', role ' + m.role if m.role else ''}, "
                       f"{m.num_parameters:,} parameters)" for m in results.models)
    keys = [k for k in plan.sections if k in SECTIONS]
    nav = "".join(f'<li><a href="#{_e(k)}">{_e(get_section(k).title)}</a></li>' for k in keys)
    sections = "".join(render_section(results, k)
                       for k in tqdm(keys, desc="figures", unit="section", disable=not progress, leave=False))
    n_ok = sum(o.status == STATUS_OK for m in results.models for o in m.sections.values())
    n_all = sum(len(m.sections) for m in results.models)
    title = "robustlens report: " + " vs ".join(m.name for m in results.models)
    verdict_line = (f'<p class="summary">The paper\'s claims on these models: {_e(summary(results.verdicts))} '
                    '(<a href="#claims">the claims</a>).</p>' if results.verdicts else "")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>
{_css()}
</style>
</head>
<body>
<header>
<h1>{_e(title)}</h1>
<p>Data: {_e(d.name)}, {d.n} samples of shape {_e(tuple(d.input_shape))}, {d.num_classes} classes, range
{_e(tuple(d.bounds))}. Plan: {_e(plan.name)}. Seed: {results.seed}.</p>
<p class="threat">Threat model: {_e(plan.threat_model())}.</p>
<p>Models: {_e(models)}.</p>
{verdict_line}
<p>{n_ok} of {n_all} section results computed; robustlens {_e(results.robustlens_version)},
torch {_e(results.environment.get("torch", "?"))}, {_e(results.created)}.</p>
</header>
<main>
{headline_table(results)}
<div id="claims">{claims_table(results)}</div>
<nav><ol>{nav}</ol></nav>
{sections}
</main>
<footer>Every sentence and verdict on this page is computed from the numbers above it. Machine-readable results:
results.json (schema robustlens report v{results.report_schema}).</footer>
</body>
</html>
"""


__all__ = ["claims_table", "headline_rows", "headline_table", "render_html", "render_section"]
