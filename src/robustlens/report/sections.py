"""The report's sections: for each, one function that computes a typed result from a classifier, the data, the plan
and a seed, the headline numbers, one sentence computed from them, a comparison sentence and the figures.

A section names the robustlens modules it needs (``requires``); when one of them is not part of the installed
version, the section is reported as unavailable instead of being computed from anything else.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..classifier import Classifier
from ..results import Result
from ..seeding import generator
from . import figures as F
from .figures import Figure
from .plan import ReportPlan


@dataclass
class ReportData:
    """The evaluation data of a report: inputs in the data range, integer labels, and their description."""

    name: str
    x: Tensor
    y: Tensor
    bounds: tuple[float, float] = (0.0, 1.0)
    class_names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.y.max()) + 1

    def order(self) -> Tensor:
        """A fixed shuffle of the samples (the same for every seed and run), so that any prefix of it mixes the
        classes even when the data are stored sorted by class."""
        return torch.randperm(len(self.y), generator=generator(0, "report-samples"))

    def head(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` samples in :meth:`order` (every section and every resumed run sees the same ones)."""
        return self.take(0, n)

    def take(self, start: int, n: int) -> tuple[Tensor, Tensor]:
        """``n`` samples of :meth:`order` from position ``start`` (wrapping around when the data run out), e.g.
        the samples a universal perturbation is fitted on, disjoint from the evaluated head when there are enough."""
        order = self.order()
        idx = order[(torch.arange(start, start + n) % len(order))]
        return self.x[idx], self.y[idx]

    @classmethod
    def from_image_data(cls, ds: object) -> ReportData:
        """From a :class:`robustlens.data.ImageData` (anything with ``x``, ``y``, ``name``, ``bounds``,
        ``classes``)."""
        return cls(name=str(getattr(ds, "name", "data")), x=ds.x, y=ds.y,  # type: ignore[attr-defined]
                   bounds=tuple(getattr(ds, "bounds", (0.0, 1.0))),  # type: ignore[arg-type]
                   class_names=list(getattr(ds, "classes", None) or []) or None)


Named = Sequence[tuple[str, Result]]


@dataclass(frozen=True)
class SectionSpec:
    """How one section is computed and shown.

    Attributes:
        key, title: identifier and heading.
        paper: the equations / figures of the paper it reproduces.
        requires: ``"module"`` or ``"module:attribute"`` entries that must import for the section to run.
        compute: ``(clf, data, plan, seed) -> Result``; ``None`` while the section is not wired in.
        headline: the numbers a result contributes to the sentences and the headline table.
        sentence: ``(headline) -> str``, one sentence about one model.
        compare: ``([(name, headline), ...], roles) -> str``, one sentence comparing models (first is the reference).
        figures: ``([(name, result), ...], plan) -> [Figure]``.
        applies: ``(plan) -> str``: empty when the section applies, else why it is skipped.
        table: rows ``(headline key, label, "pct" | "num")`` this section adds to the headline table.
    """

    key: str
    title: str
    paper: str
    requires: tuple[str, ...] = ()
    compute: Callable[[Classifier, ReportData, ReportPlan, int], Result] | None = None
    headline: Callable[[Result], dict[str, float]] = field(default=lambda r: {})
    sentence: Callable[[dict[str, float]], str] = field(default=lambda h: "")
    compare: Callable[[list[tuple[str, dict[str, float]]], dict[str, str]], str] | None = None
    figures: Callable[[Named, ReportPlan], list[Figure]] = field(default=lambda named, plan: [])
    applies: Callable[[ReportPlan], str] = field(default=lambda plan: "")
    table: tuple[tuple[str, str, str], ...] = ()

    def missing(self) -> list[str]:
        """The required modules or names that cannot be imported (empty when the section can run)."""
        out = []
        for req in self.requires:
            mod, _, attr = req.partition(":")
            try:
                m = importlib.import_module(mod)
                if attr:
                    getattr(m, attr)
            except (ImportError, AttributeError):
                out.append(req)
        if self.compute is None and not out:
            out.append(f"the {self.key!r} section of the report")
        return out


# ---------------------------------------------------------------------------------------------- formatting helpers
def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def num(v: float) -> str:
    if v == 0 or not np.isfinite(v):
        return f"{v:g}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def fmt(v: float, kind: str) -> str:
    """Format a headline number as a percentage (``"pct"``) or a number (``"num"``)."""
    return pct(v) if kind == "pct" else num(v)


def ratio_phrase(a: float, b: float) -> str:
    """``a`` relative to ``b`` as ``"2.4x"`` (or ``"n/a"`` when ``b`` is zero)."""
    if b == 0 or not np.isfinite(a) or not np.isfinite(b):
        return "n/a"
    return f"{a / b:.3g}x"


def claim_clause(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str], key: str, claim: str, *,
                 robust_larger: bool) -> str:
    """When the compared models include one with role ``"standard"`` and one with role ``"robust"``, say whether
    the paper's claim (``claim``, e.g. ``"larger margins"``) holds for them on headline ``key``: the robust model's
    value must be larger (``robust_larger``) or smaller than the standard model's. Empty otherwise."""
    by_role = {roles.get(n): h for n, h in hs if roles.get(n)}
    std, rob = by_role.get("standard"), by_role.get("robust")
    if std is None or rob is None or key not in std or key not in rob:
        return ""
    a, b = float(rob[key]), float(std[key])
    if not (np.isfinite(a) and np.isfinite(b)):
        return f" Whether the robust model has {claim}, as the paper reports, cannot be told from these numbers."
    holds = a > b if robust_larger else a < b
    verdict = "holds" if holds else "does not hold"
    return f" The paper's claim that the robust model has {claim} {verdict} for this pair."


def ratio_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str], key: str, what: str, kind: str = "num",
                  *, claim: str = "", robust_larger: bool = True) -> str:
    """``"B's <what> is 2.4x A's (x vs y)"`` for every model against the first, plus :func:`claim_clause`."""
    (ref, h0), others = hs[0], hs[1:]
    parts = [f"{name}'s {what} is {ratio_phrase(h[key], h0[key])} {ref}'s ({fmt(h[key], kind)} vs "
             f"{fmt(h0[key], kind)})" for name, h in others]
    out = "; ".join(parts) + "."
    if claim:
        out += claim_clause(hs, roles, key, claim, robust_larger=robust_larger)
    return out


def finite_median(t: Tensor | np.ndarray) -> float:
    """Median of the finite entries (``nan`` when there are none)."""
    a = np.asarray(t.detach().cpu().double() if isinstance(t, Tensor) else t, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def correct_head(clf: Classifier, data: ReportData, n: int) -> tuple[Tensor, Tensor]:
    """Up to ``n`` correctly classified samples, taken in :meth:`ReportData.order` from the start (a wider window
    than ``n`` is scanned, so a less accurate model still gets ``n`` samples when the data have them)."""
    x, y = data.head(min(len(data.y), max(4 * n, n + 64)))
    ok = clf.predict(x) == y.to(clf.device)
    idx = ok.nonzero().flatten().cpu()[:n]
    return x[idx], y[idx]


# ---------------------------------------------------------------------------------------------- clean accuracy
@dataclass
class CleanAccuracy(Result):
    """Clean (standard) accuracy, eq. (1), on the report's samples.

    Attributes:
        n: samples evaluated.
        accuracy: fraction classified correctly.
        per_class: accuracy of each class (``nan`` for a class absent from the samples).
        confusion: ``confusion[i, j]`` = samples of class i predicted as j.
        mean_confidence: mean softmax probability of the predicted class.
    """

    n: int
    accuracy: float
    per_class: list[float]
    confusion: Tensor
    mean_confidence: float


def compute_clean(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> CleanAccuracy:
    """Clean accuracy (paper eq. 1) of ``clf`` on the plan's first ``n_samples`` samples, with per-class accuracy
    and the confusion matrix. Deterministic (``seed`` is unused)."""
    x, y = data.head(plan.samples(len(data.y)))
    logits = clf.logits(x)
    pred = logits.argmax(1).cpu()
    y = y.cpu()
    c = max(clf.num_classes, data.num_classes)
    conf = torch.zeros(c, c, dtype=torch.long)
    conf.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    counts = conf.sum(1)
    per_class = [float(conf[i, i] / counts[i]) if counts[i] > 0 else float("nan") for i in range(c)]
    return CleanAccuracy(
        n=int(y.numel()),
        accuracy=float((pred == y).float().mean()),
        per_class=per_class,
        confusion=conf,
        mean_confidence=float(logits.softmax(1).amax(1).mean()),
    )


def _clean_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, CleanAccuracy)
    pc = np.asarray(r.per_class, dtype=np.float64)
    worst = int(np.nanargmin(pc)) if np.isfinite(pc).any() else -1
    return {"clean_accuracy": r.accuracy, "n": float(r.n), "worst_class": float(worst),
            "worst_class_accuracy": float(pc[worst]) if worst >= 0 else float("nan"),
            "mean_confidence": r.mean_confidence}


def _clean_sentence(h: dict[str, float]) -> str:
    return (f"Clean accuracy is {pct(h['clean_accuracy'])} on {int(h['n'])} test images; the weakest class is "
            f"{int(h['worst_class'])} at {pct(h['worst_class_accuracy'])}.")


def _clean_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    (ref, h0), others = hs[0], hs[1:]
    parts = []
    for name, h in others:
        d = 100 * (h["clean_accuracy"] - h0["clean_accuracy"])
        if abs(d) < 0.05:
            parts.append(f"{name} and {ref} have the same clean accuracy ({pct(h['clean_accuracy'])})")
            continue
        word = "higher" if d > 0 else "lower"
        parts.append(f"{name}'s clean accuracy is {abs(d):.1f} points {word} than {ref}'s "
                     f"({pct(h['clean_accuracy'])} vs {pct(h0['clean_accuracy'])})")
    return "; ".join(parts) + "."


def _clean_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    series = []
    groups: list[str] = []
    for name, r in named:
        assert isinstance(r, CleanAccuracy)
        groups = [str(i) for i in range(len(r.per_class))]
        series.append((f"{name} ({pct(r.accuracy)})", [0.0 if not np.isfinite(v) else v for v in r.per_class]))
    fig = F.bars(groups, series, ylabel="accuracy", title="Clean accuracy per class", ylim=(0, 1.05))
    return [Figure("Per-class clean accuracy on the report's samples.", F.to_data_uri(fig))]


CLEAN = SectionSpec(
    key="clean", title="Clean accuracy", paper="eq. (1)", compute=compute_clean, headline=_clean_headline,
    sentence=_clean_sentence, compare=_clean_compare, figures=_clean_figures,
    table=(("clean_accuracy", "clean accuracy", "pct"),),
)


# ---------------------------------------------------------------------------------------------- registry
from .sec_attacks import EXAMPLES, ROBUSTNESS, SANITY, UNIVERSAL  # noqa: E402
from .sec_geometry import CERTIFIED, CROSS_SECTIONS, CURVATURE, DCT, NOISE, NORMALS  # noqa: E402

SECTIONS: dict[str, SectionSpec] = {
    s.key: s
    for s in (CLEAN, ROBUSTNESS, EXAMPLES, CROSS_SECTIONS, CURVATURE, NORMALS, UNIVERSAL, DCT, NOISE, CERTIFIED, SANITY)
}

__all__ = ["SECTIONS", "CleanAccuracy", "ReportData", "SectionSpec", "compute_clean"]
