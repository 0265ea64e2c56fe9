"""Run a report: every section of the plan for every model, each outcome saved as it finishes, then the verdicts,
``results.json`` and ``report.html``.

Per-section outcomes are written to ``OUT/state/<model id>/<section>.json`` (atomic writes; the model id is
:func:`robustlens.state.folder_id` of its name, so two names never share a folder) as soon as they finish; with
``resume=True`` finished sections are loaded instead of recomputed. ``OUT/state/manifest.json`` records what the
state was computed from (plan, seed, data and weights fingerprints, through :func:`robustlens.state.check_manifest`);
resuming against a different manifest is refused with the settings that differ, since mixing sections of two
different runs would make the page lie. Without ``resume`` the state is started afresh. A second run on the same
folder while one is running is refused (:class:`robustlens.state.OutputLock`).
"""

from __future__ import annotations

import datetime
import platform
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..classifier import Classifier
from ..errors import ConfigError
from ..results import atomic_write_bytes
from ..state import MANIFEST, OutputLock, check_manifest, folder_id, model_hash, read_manifest, tensor_hash
from .data import ReportData
from .diagnose import failure_cause
from .html import render_html
from .judge import judge
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
from .section import RunContext, get_section

UNAVAILABLE_NOTE = "not available in this version"
RESUME_FIX = "run without --resume (resume=False) to recompute every section, or use another --out folder"


@dataclass
class ModelEntry:
    """A model to report on: display name, classifier, where it came from, and optionally its role
    (``"standard"`` or ``"robust"``) so that the claims about adversarial training are tested on that pair."""

    name: str
    clf: Classifier
    source: str = ""
    role: str = ""


def model_fingerprint(clf: Classifier) -> str:
    """The digest of the model's weights, bounds and normalization (:func:`robustlens.state.model_hash`)."""
    return model_hash(clf)


def fingerprint(models: Sequence[ModelEntry], data: ReportData, plan: ReportPlan, seed: int) -> dict[str, object]:
    """What a report's state is computed from: its schema, seed, plan, data and each model's weights."""
    return {
        "report_schema": REPORT_SCHEMA_VERSION,
        "seed": seed,
        "plan": plan.to_dict(),
        "data": {"name": data.name, "digest": tensor_hash(data.x, data.y)},
        "models": {m.name: model_fingerprint(m.clf) for m in models},
    }


def run_section(key: str, entry: ModelEntry, data: ReportData, plan: ReportPlan, seed: int, *,
                progress: bool = False) -> SectionOutcome:
    """Compute one section for one model and wrap it (with its sentence) in a :class:`SectionOutcome`.

    A section whose modules are missing is ``unavailable``; one not applicable to the plan is ``skipped``; an
    exception inside the computation is kept as an ``error`` outcome (and warned about), so one failing analysis does
    not hide the others. Its note is the cause a user can act on when :func:`~.diagnose.failure_cause` finds one (a
    constant classifier, non-finite logits), with the internal message as the detail; else the message itself.
    """
    sec = get_section(key)
    missing = sec.missing()
    if missing:
        return SectionOutcome(key=sec.key, title=sec.title, status=STATUS_UNAVAILABLE,
                              note=f"{UNAVAILABLE_NOTE} (needs {', '.join(missing)})")
    why = sec.applies(plan)
    if why:
        return SectionOutcome(key=sec.key, title=sec.title, status=STATUS_SKIPPED, note=why)
    t0 = time.perf_counter()
    try:
        result = sec.typed(sec.compute(entry.clf, data, plan, RunContext(seed=seed, progress=progress)))
        headline = {k: float(v) for k, v in sec.headline(result).items()}
        sentence = sec.sentence(headline)
    except Exception as e:  # noqa: BLE001 - kept on the page and warned about
        error = f"{type(e).__name__}: {e}"
        cause = failure_cause(entry.clf, data)
        warnings.warn(f"report section {key!r} failed for model {entry.name!r}: {cause or error}", stacklevel=2)
        return SectionOutcome(key=sec.key, title=sec.title, status=STATUS_ERROR, note=cause or error,
                              detail=error if cause else "", seconds=time.perf_counter() - t0)
    return SectionOutcome(key=sec.key, title=sec.title, status=STATUS_OK, sentence=sentence, headline=headline,
                          seconds=time.perf_counter() - t0, result=result)


def compare_sentences(reports: Sequence[ModelReport], plan: ReportPlan) -> dict[str, str]:
    """One sentence per section comparing the models (the first is the reference), where all of them have it."""
    out: dict[str, str] = {}
    if len(reports) < 2:
        return out
    for key in plan.sections:
        outs = [r.sections.get(key) for r in reports]
        if not all(o is not None and o.ok for o in outs):
            continue
        hs = [(r.name, o.headline) for r, o in zip(reports, outs, strict=True) if o is not None]
        try:
            sentence = get_section(key).compare(hs)
        except Exception as e:  # noqa: BLE001 - a sentence bug must not lose the numbers
            warnings.warn(f"comparison sentence of section {key!r} failed: {e}", stacklevel=2)
            continue
        if sentence:
            out[key] = sentence
    return out


def _start_state(state: Path, fp: dict[str, object], resume: bool) -> None:
    """Check (``resume``) or start afresh the state folder of a report."""
    if not resume and state.exists():
        if not (state / MANIFEST).is_file() and any(state.iterdir()):
            raise ConfigError(f"{state} exists but was not written by a robustlens report; choose another --out "
                              "folder")
        shutil.rmtree(state)
    if (state / MANIFEST).exists():
        try:
            read_manifest(state / MANIFEST)
        except ConfigError:
            raise ConfigError(f"{state} holds the state of an older or damaged report that cannot be resumed; "
                              f"{RESUME_FIX}") from None
    check_manifest(state, fp, resume=True, what="report", fix=RESUME_FIX)


def _load_outcome(path: Path) -> SectionOutcome | None:
    """A finished outcome saved in the state folder, or ``None`` (absent, unreadable, or worth retrying)."""
    if not path.exists():
        return None
    try:
        outcome = SectionOutcome.load(path)
    except (ValueError, TypeError, OSError, KeyError):
        return None
    if outcome.status in (STATUS_ERROR, STATUS_UNAVAILABLE):
        return None  # retry: the code may have been fixed or the module added since
    return outcome


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
    """Compute every section of ``plan`` for every model, judge the paper's claims, and write ``results.json`` and
    ``report.html``.

    Args:
        models: the models, the reference first (comparison sentences are relative to it).
        data: the evaluation data.
        plan: what to compute.
        out_dir: the output folder (created).
        seed: seed of every stochastic section; same seed, same numbers.
        resume: load the sections already finished in ``out_dir/state`` (same plan, seed, data and weights).
        progress: show a tqdm bar over (model, section) pairs and the bars of the library functions inside.
        write: write ``results.json`` and ``report.html`` at the end.
    """
    if not models:
        raise ConfigError("give at least one model to report on")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be distinct, got {names}; give each model its own name "
                          "(ModelEntry.name in Python, --names on the command line)")
    bad = [m.role for m in models if m.role not in ("", "standard", "robust")]
    if bad:
        raise ConfigError(f"model roles must be 'standard', 'robust' or empty, got {bad}")
    out = Path(out_dir)
    state = out / "state"
    with OutputLock(out, "report"):
        _start_state(state, fingerprint(models, data, plan, seed), resume)
        reports: list[ModelReport] = []
        bar = tqdm(total=len(models) * len(plan.sections), desc="report", disable=not progress, unit="section")
        for m in models:
            rep = ModelReport(name=m.name, source=m.source, role=m.role,
                              num_parameters=sum(p.numel() for p in m.clf.model.parameters() if p.requires_grad))
            for key in plan.sections:
                bar.set_postfix_str(f"{m.name}: {key}")
                path = state / folder_id(m.name) / f"{key}.json"
                outcome = _load_outcome(path) if resume else None
                if outcome is None:
                    outcome = run_section(key, m, data, plan, seed, progress=progress)
                    outcome.save(path)
                rep.sections[key] = outcome
                bar.update(1)
            reports.append(rep)
        bar.close()

        results = ReportResults(
            report_schema=REPORT_SCHEMA_VERSION,
            robustlens_version=__version__,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            seed=seed,
            plan=plan,
            data=DataSummary(name=data.name, n=plan.samples(len(data.y)), input_shape=list(data.x.shape[1:]),
                             num_classes=data.num_classes, bounds=[float(b) for b in data.bounds],
                             class_names=data.class_names),
            models=reports,
            comparison=compare_sentences(reports, plan),
            environment={"torch": torch.__version__, "python": platform.python_version(),
                         "device": str(models[0].clf.device), "threads": torch.get_num_threads()},
        )
        results.verdicts = judge(results)
        if write:
            write_outputs(results, out, progress=progress)
    return results


def write_outputs(results: ReportResults, out_dir: str | Path, *, progress: bool = False) -> tuple[Path, Path]:
    """Write ``results.json`` (one file, arrays inside) and the self-contained ``report.html``; return their paths."""
    out = Path(out_dir)
    rpath = results.save(out / "results.json")
    hpath = out / "report.html"
    atomic_write_bytes(hpath, render_html(results, progress=progress).encode("utf-8"))
    return rpath, hpath


__all__ = ["ModelEntry", "RESUME_FIX", "UNAVAILABLE_NOTE", "compare_sentences", "fingerprint", "model_fingerprint",
           "run_report", "run_section", "write_outputs"]
