"""Clean accuracy (paper eq. 1) per class; the section whose numbers decide whether a model can be judged at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...classifier import Classifier
from ...results import Result
from .. import figures as F
from ..claims import Gate, PairClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, compare_all, count, pct

#: A model is near chance when its clean accuracy is less than this fraction of the way from chance (1 / classes)
#: to perfect; its numbers then say nothing about the paper's claims.
NEAR_CHANCE = 0.25


def near_chance(accuracy: float, num_classes: int) -> bool:
    """Whether ``accuracy`` is within :data:`NEAR_CHANCE` of the way from chance to perfect."""
    chance = 1.0 / max(1, num_classes)
    return not accuracy >= chance + NEAR_CHANCE * (1.0 - chance)  # NaN counts as near chance


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


@register_section("clean", order=10)
class CleanSection(Section[CleanAccuracy]):
    """Clean accuracy, per class and overall; a model near chance cannot be judged on any claim."""

    title = "Clean accuracy"
    paper = "eq. (1)"
    rows = (Row("clean_accuracy", "clean accuracy", "pct"),)
    required_for_verdicts = True
    claims = (
        PairClaim(key="accuracy-trade-off", statement="adversarial training costs clean accuracy (robustness may be "
                  "at odds with accuracy)", paper="Sec. III-A3", measure="clean_accuracy", label="clean accuracy",
                  robust_larger=False, kind="pct", trusts_gradients=False),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> CleanAccuracy:
        """Clean accuracy (eq. 1) on the plan's first ``n_samples`` samples, with per-class accuracy and the
        confusion matrix (deterministic)."""
        x, y = data.head(plan.samples(len(data.y)))
        logits = clf.logits(x)
        pred = logits.argmax(1).cpu()
        y = y.cpu()
        c = max(clf.num_classes, data.num_classes)
        conf = torch.zeros(c, c, dtype=torch.long)
        conf.index_put_((y, pred), torch.ones_like(y), accumulate=True)
        counts = conf.sum(1)
        per_class = [float(conf[i, i] / counts[i]) if counts[i] > 0 else float("nan") for i in range(c)]
        return CleanAccuracy(n=int(y.numel()), accuracy=float((pred == y).float().mean()), per_class=per_class,
                             confusion=conf, mean_confidence=float(logits.softmax(1).amax(1).mean()))

    def headline(self, r: CleanAccuracy) -> dict[str, float]:
        pc = np.asarray(r.per_class, dtype=np.float64)
        worst = int(np.nanargmin(pc)) if np.isfinite(pc).any() else -1
        return {"clean_accuracy": r.accuracy, "n": float(r.n), "worst_class": float(worst),
                "worst_class_accuracy": float(pc[worst]) if worst >= 0 else float("nan"),
                "mean_confidence": r.mean_confidence, "num_classes": float(len(r.per_class))}

    def sentence(self, h: Headline) -> str:
        s = f"Clean accuracy is {pct(h['clean_accuracy'])} on {count(h['n'])} test images"
        if h["worst_class"] >= 0:
            s += f"; the weakest class is {count(h['worst_class'])} at {pct(h['worst_class_accuracy'])}"
        return s + "."

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        return compare_all(hs, "clean_accuracy", "clean accuracy", "pct")

    def gates(self, h: Headline, num_classes: int) -> list[Gate]:
        k = max(num_classes, int(h.get("num_classes", 0)))
        if near_chance(h["clean_accuracy"], k):
            return [Gate(f"is near chance (clean accuracy {pct(h['clean_accuracy'])} with {k} classes, chance "
                         f"{pct(1 / k)}), so its numbers say nothing about the paper's claims")]
        return []

    def figures(self, named: Sequence[tuple[str, CleanAccuracy]], plan: ReportPlan) -> list[Figure]:
        groups = [str(i) for i in range(max(len(r.per_class) for _, r in named))]
        series = [(f"{name} ({pct(r.accuracy)})", [v if np.isfinite(v) else 0.0 for v in r.per_class])
                  for name, r in named]
        fig = F.bars(groups, series, ylabel="accuracy", title="Clean accuracy per class", ylim=(0, 1.05))
        return [F.render(fig, "Per-class clean accuracy on the report's samples.")]


__all__ = ["NEAR_CHANCE", "CleanAccuracy", "CleanSection", "near_chance"]
