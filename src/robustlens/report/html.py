"""The HTML page of a report: one self-contained file (inline CSS, figures as data URIs, no scripts, no network).

The page is a function of :class:`~robustlens.report.outcome.ReportResults` only, so a reloaded ``results.json``
renders the same page. Sections keep the plan's order; when several models are reported, each section starts with
the sentence comparing them, then one sentence per model, then the figures side by side.
"""

from __future__ import annotations

import html
import warnings
from importlib import resources

from .figures import Figure
from .outcome import STATUS_ERROR, STATUS_OK, STATUS_UNAVAILABLE, ReportResults
from .plan import ReportPlan
from .sections import SECTIONS, fmt


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _css() -> str:
    return resources.files("robustlens.report").joinpath("style.css").read_text()


def headline_table(results: ReportResults) -> str:
    """The table of headline numbers: one row per quoted number, one column per model."""
    rows = []
    for key in results.plan.sections if isinstance(results.plan, ReportPlan) else []:
        spec = SECTIONS.get(key)
        if spec is None:
            continue
        for hkey, label, kind in spec.table:
            cells = []
            for m in results.models:
                o = m.sections.get(key)
                v = o.headline.get(hkey) if o is not None and o.ok else None
                cells.append("&ndash;" if v is None else _e(fmt(v, kind)))
            if any(c != "&ndash;" for c in cells):
                rows.append(f"<tr><td>{_e(label)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    head = "<tr><th></th>" + "".join(f"<th>{_e(m.name)}</th>" for m in results.models) + "</tr>"
    return f'<table class="headline"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _figures_html(figs: list[Figure]) -> str:
    parts = []
    for f in figs:
        parts.append(f'<figure><img src="{f.uri}" alt="{_e(f.caption)}"><figcaption>{_e(f.caption)}</figcaption>'
                     "</figure>")
    return '<div class="figs">' + "".join(parts) + "</div>" if parts else ""


def render_section(results: ReportResults, key: str) -> str:
    """The HTML of one section: heading, comparison sentence, per-model sentences or notes, figures."""
    spec = SECTIONS[key]
    plan = results.plan
    assert isinstance(plan, ReportPlan)
    outcomes = [(m.name, m.sections.get(key)) for m in results.models]
    head = f'<h2>{_e(spec.title)}<span class="paper">{_e(spec.paper)}</span></h2>'
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
        if o.status == STATUS_OK:
            items.append(f'<li><span class="model">{_e(name)}:</span> {_e(o.sentence)}</li>')
        elif o.status == STATUS_ERROR:
            items.append(f'<li><span class="model">{_e(name)}:</span> <span class="error">this section failed: '
                         f"{_e(o.note)}</span></li>")
        else:
            items.append(f'<li><span class="model">{_e(name)}:</span> <span class="note">{_e(o.note)}</span></li>')
    body.append('<ul class="sentences">' + "".join(items) + "</ul>")
    named = [(n, o.result) for n, o in present if o.status == STATUS_OK and o.result is not None]
    if named:
        try:
            figs = spec.figures(named, plan)
        except Exception as e:  # noqa: BLE001 - a figure bug must not lose the numbers
            warnings.warn(f"figures of section {key!r} failed: {type(e).__name__}: {e}", stacklevel=2)
            body.append(f'<p class="error">the figures of this section could not be drawn: {_e(e)}</p>')
        else:
            body.append(_figures_html(figs))
    return f'<section id="{_e(key)}">' + "".join(body) + "</section>"


def render_html(results: ReportResults) -> str:
    """The complete, self-contained report page."""
    plan = results.plan
    assert isinstance(plan, ReportPlan)
    d = results.data
    models = ", ".join(f"{m.name} ({m.source or 'given'}, {m.num_parameters:,} parameters)" for m in results.models)
    nav = "".join(
        f'<li><a href="#{_e(k)}">{_e(SECTIONS[k].title)}</a></li>' for k in plan.sections if k in SECTIONS
    )
    sections = "".join(render_section(results, k) for k in plan.sections if k in SECTIONS)
    n_ok = sum(o.status == STATUS_OK for m in results.models for o in m.sections.values())
    n_all = sum(len(m.sections) for m in results.models)
    title = "robustlens report: " + " vs ".join(m.name for m in results.models)
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
<p>Models: {_e(models)}.</p>
<p>{n_ok} of {n_all} section results computed; robustlens {_e(results.robustlens_version)},
torch {_e(results.environment.get("torch", "?"))}, {_e(results.created)}.</p>
</header>
<main>
{headline_table(results)}
<nav><ol>{nav}</ol></nav>
{sections}
</main>
<footer>Every sentence on this page is computed from the numbers above it. Machine-readable results:
results.json (schema robustlens report v{results.report_schema}).</footer>
</body>
</html>
"""


__all__ = ["headline_table", "render_html", "render_section"]
