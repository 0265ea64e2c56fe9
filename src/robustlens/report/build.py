"""Run a report: every section of the plan for every model, each outcome saved as it finishes, then
``results.json`` and ``report.html``.

Per-section outcomes are written to ``OUT/state/<model>/<section>.json`` (atomic writes) as soon as they finish; with
``resume=True`` finished sections are loaded instead of recomputed. ``OUT/state/manifest.json`` records what the
state was computed from (plan, seed, data and weights fingerprints); resuming against a different manifest is refused,
since mixing sections of two different runs would make the page lie.
"""

from __future__ import annotations

import datetime
import json
import platform
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..classifier import Classifier
from ..errors import ConfigError
from ..results import atomic_write_bytes
from ..runner import model_hash, tensor_hash
from .outcome import (
    REPORT_SCHEMA_VERSION,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_SKIPPED,
    STATUS_UNAVAILABLE,
    DataSummary,
    ModelReport,
    ReportResults,
    SectionOutcome,
)
from .plan import ReportPlan
from .sections import SECTIONS, ReportData

UNAVAILABLE_NOTE = "not available in this version"


@dataclass
class ModelEntry:
    """A model to report on: display name, classifier, where it came from, and optionally its role
    (``"standard"`` or ``"robust"``) so that comparison sentences can test the paper's claims about that pair."""

    name: str
    clf: Classifier
    source: str = ""
    role: str = ""


def slug(name: str) -> str:
    """A file-system-safe version of a model name."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")
    return s or "model"


def model_fingerprint(clf: Classifier) -> str:
    """The evaluation runner's digest of the model's weights, bounds and normalization."""
    return model_hash(clf)


def _manifest(models: Sequence[ModelEntry], data: ReportData, plan: ReportPlan, seed: int) -> dict[str, object]:
    return {
        "report_schema": REPORT_SCHEMA_VERSION,
        "seed": seed,
        "plan": plan.to_dict(),
        "data": {"name": data.name, "digest": tensor_hash(data.x, data.y)},
        "models": {m.name: model_fingerprint(m.clf) for m in models},
    }


def run_section(key: str, entry: ModelEntry, data: ReportData, plan: ReportPlan, seed: int) -> SectionOutcome:
    """Compute one section for one model and wrap it (with its sentence) in a :class:`SectionOutcome`.

    A section whose modules are missing is ``unavailable``; one not applicable to the plan is ``skipped``; an
    exception inside the computation is kept as an ``error`` outcome with its message (and warned about), so one
    failing analysis does not hide the others.
    """
    spec = SECTIONS[key]
    missing = spec.missing()
    if missing:
        return SectionOutcome(key=key, title=spec.title, status=STATUS_UNAVAILABLE,
                              note=f"{UNAVAILABLE_NOTE} (needs {', '.join(missing)})")
    why = spec.applies(plan)
    if why:
        return SectionOutcome(key=key, title=spec.title, status=STATUS_SKIPPED, note=why)
    assert spec.compute is not None
    t0 = time.perf_counter()
    try:
        result = spec.compute(entry.clf, data, plan, seed)
        headline = {k: float(v) for k, v in spec.headline(result).items()}
        sentence = spec.sentence(headline)
    except Exception as e:  # noqa: BLE001 - kept on the page and warned about
        warnings.warn(f"report section {key!r} failed for model {entry.name!r}: {type(e).__name__}: {e}",
                      stacklevel=2)
        return SectionOutcome(key=key, title=spec.title, status=STATUS_ERROR,
                              note=f"{type(e).__name__}: {e}", seconds=time.perf_counter() - t0)
    return SectionOutcome(key=key, title=spec.title, status=STATUS_OK, sentence=sentence, headline=headline,
                          seconds=time.perf_counter() - t0, result=result)


def compare_sentences(models: Sequence[ModelEntry], reports: Sequence[ModelReport], plan: ReportPlan) -> dict[str, str]:
    """One sentence per section comparing the models (the first is the reference), where all of them have it."""
    out: dict[str, str] = {}
    if len(reports) < 2:
        return out
    roles = {m.name: m.role for m in models if m.role}
    for key in plan.sections:
        spec = SECTIONS[key]
        outs = [r.sections.get(key) for r in reports]
        if spec.compare is None or not all(o is not None and o.ok for o in outs):
            continue
        hs = [(r.name, o.headline) for r, o in zip(reports, outs, strict=True) if o is not None]
        try:
            out[key] = spec.compare(hs, roles)
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"comparison sentence of section {key!r} failed: {e}", stacklevel=2)
    return out


def run_report(
    models: Sequence[ModelEntry],
    data: ReportData,
    plan: ReportPlan,
    out_dir: str | Path,
    *,
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    write: bool = True,
) -> ReportResults:
    """Compute every section of ``plan`` for every model and write ``results.json`` and ``report.html``.

    Args:
        models: the models, the reference first (comparison sentences are relative to it).
        data: the evaluation data.
        plan: what to compute.
        out_dir: the output folder (created).
        seed: seed of every stochastic section; same seed, same numbers.
        resume: load the sections already finished in ``out_dir/state`` (same plan, seed, data and weights).
        progress: show a tqdm bar over (model, section) pairs.
        write: write ``results.json`` and ``report.html`` at the end.
    """
    if not models:
        raise ConfigError("give at least one model to report on")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be distinct, got {names}; give each model its own name")
    out = Path(out_dir)
    state = out / "state"
    manifest = _manifest(models, data, plan, seed)
    mpath = state / "manifest.json"
    if resume and mpath.exists():
        old = json.loads(mpath.read_text())
        if old != json.loads(json.dumps(manifest)):
            raise ConfigError(
                f"{out} holds sections computed with other settings (plan, seed, data or weights differ); "
                "run without --resume to recompute, or use another --out folder"
            )
    atomic_write_bytes(mpath, json.dumps(manifest, indent=2).encode())

    reports: list[ModelReport] = []
    total = len(models) * len(plan.sections)
    bar = tqdm(total=total, desc="report", disable=not progress, unit="section")
    for m in models:
        rep = ModelReport(name=m.name, source=m.source,
                          num_parameters=sum(p.numel() for p in m.clf.model.parameters() if p.requires_grad))
        for key in plan.sections:
            bar.set_postfix_str(f"{m.name}: {key}")
            path = state / slug(m.name) / f"{key}.json"
            outcome: SectionOutcome | None = None
            if resume and path.exists():
                try:
                    outcome = SectionOutcome.load(path)
                except (ValueError, TypeError, OSError):
                    outcome = None
                if outcome is not None and outcome.status in (STATUS_ERROR, STATUS_UNAVAILABLE):
                    outcome = None  # retry: the code may have been fixed or the module added since
            if outcome is None:
                outcome = run_section(key, m, data, plan, seed)
                outcome.save(path)
            rep.sections[key] = outcome
            bar.update(1)
        reports.append(rep)
    bar.close()

    x0 = data.x[:1]
    results = ReportResults(
        report_schema=REPORT_SCHEMA_VERSION,
        robustlens_version=_version(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        seed=seed,
        plan=plan,
        data=DataSummary(name=data.name, n=plan.samples(len(data.y)), input_shape=list(x0.shape[1:]),
                         num_classes=data.num_classes, bounds=[float(b) for b in data.bounds],
                         class_names=data.class_names),
        models=reports,
        comparison=compare_sentences(models, reports, plan),
        environment={"torch": torch.__version__, "python": platform.python_version(),
                     "device": str(models[0].clf.device), "threads": torch.get_num_threads()},
    )
    if write:
        write_outputs(results, out)
    return results


def write_outputs(results: ReportResults, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` (one file, arrays inside) and the self-contained ``report.html``; return their paths."""
    from .html import render_html

    out = Path(out_dir)
    rpath = results.save(out / "results.json")
    hpath = out / "report.html"
    atomic_write_bytes(hpath, render_html(results).encode("utf-8"))
    return rpath, hpath


def _version() -> str:
    from .. import __version__

    return __version__


__all__ = ["ModelEntry", "UNAVAILABLE_NOTE", "model_fingerprint", "run_report", "run_section", "write_outputs"]

