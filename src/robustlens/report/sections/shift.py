"""Accuracy under the common corruptions (Hendrycks & Dietterich, ICLR 2019): does adversarial robustness carry
over to distribution shift (paper Sec. IV-C1, footnote 10)? Adversarial training is reported to help on noise and
high-frequency corruptions and to hurt on low-frequency ones such as fog and contrast."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ...classifier import Classifier
from ...shift.corruptions import benchmark_corruptions
from ...shift.robustness import CorruptionResult, corruption_robustness, plot_corruption_heatmap, plot_corruptions
from .. import figures as F
from ..claims import PairClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, num, pct, versus

#: images evaluated under every corruption and severity (at most; the plan's n_samples when smaller)
MAX_SAMPLES = 200
#: the low-frequency corruptions of the claim (footnote 10: adversarial training hurts there)
LOW_FREQUENCY = ("fog", "contrast")


def mce_against(h: Headline, h0: Headline) -> float:
    """The mCE of headline ``h`` with ``h0`` as the baseline (mean over the benchmark's corruptions of the ratio of
    summed errors; the severities are the same for both, so the ratio of mean errors)."""
    ratios = []
    for c in benchmark_corruptions():
        e, e0 = 1 - h.get(f"acc_{c}", math.nan), 1 - h0.get(f"acc_{c}", math.nan)
        if not (math.isfinite(e) and math.isfinite(e0)) or e0 <= 0:
            return math.nan
        ratios.append(e / e0)
    return sum(ratios) / len(ratios)


@register_section("shift", order=95)
class ShiftSection(Section[CorruptionResult]):
    """The 15 benchmark corruptions at severities 1-5 on the report's first images (CIFAR-10-C parameters for
    images up to 64 pixels, ImageNet-C above), accuracy by family, and the mCE of each model with the first model
    as the baseline."""

    title = "Common corruptions"
    paper = "Sec. IV-C1, footnote 10"
    requires = ("robustlens.shift.robustness",)
    rows = (Row("mean_acc", "mean accuracy over 15 corruptions x 5 severities", "pct"),
            Row("noise_acc", "accuracy under noise corruptions", "pct"),
            Row("lowfreq_acc", "accuracy under fog and contrast", "pct"))
    claims = (
        PairClaim(key="noise", statement="adversarial training improves accuracy under noise corruptions (gaussian, "
                  "shot, impulse)", paper="Sec. IV-C1, footnote 10", measure="noise_acc",
                  label="mean accuracy under the noise corruptions", robust_larger=True, kind="pct",
                  trusts_gradients=False),
        PairClaim(key="low-frequency", statement="adversarial training lowers accuracy under low-frequency "
                  "corruptions (fog, contrast)", paper="Sec. IV-C1, footnote 10", measure="lowfreq_acc",
                  label="mean accuracy under fog and contrast", robust_larger=False, kind="pct",
                  trusts_gradients=False),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> CorruptionResult:
        x, y = data.head(min(plan.n_samples, MAX_SAMPLES))
        return corruption_robustness(clf, x, y, corruptions="benchmark", seed=ctx.seed, batch_size=plan.batch_size,
                                     progress=ctx.progress)

    def headline(self, r: CorruptionResult) -> dict[str, float]:
        h = {"clean": r.clean_accuracy, "mean_acc": r.mean_accuracy, "n": float(r.n)}
        for fam, acc in r.family_accuracy().items():
            h[f"{fam}_acc"] = acc
        for i, c in enumerate(r.corruptions):
            h[f"acc_{c}"] = float(r.accuracy[i].double().mean())
        low = [h[f"acc_{c}"] for c in LOW_FREQUENCY if f"acc_{c}" in h]
        h["lowfreq_acc"] = sum(low) / len(low) if low else math.nan
        return h

    def sentence(self, h: Headline) -> str:
        fams = ", ".join(f"{f} {pct(h.get(f'{f}_acc', math.nan))}" for f in ("noise", "blur", "weather", "digital"))
        return (f"Under the 15 common corruptions the accuracy falls from {pct(h['clean'])} (clean) to a mean of "
                f"{pct(h['mean_acc'])} over all severities ({fams}); fog and contrast give {pct(h['lowfreq_acc'])}.")

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        (ref, h0), others = hs[0], hs[1:]
        parts = []
        for name, h in others:
            parts.append(f"{name}'s mCE with {ref} as the baseline is {num(mce_against(h, h0))}; "
                         + versus(name, h, ref, h0, "noise_acc", "noise accuracy", "pct") + ", "
                         + versus(name, h, ref, h0, "lowfreq_acc", "fog and contrast accuracy", "pct"))
        return "; ".join(parts) + "." if parts else ""

    def figures(self, named: Sequence[tuple[str, CorruptionResult]], plan: ReportPlan) -> list[Figure]:
        fig, axes = F.new_figure(w=4.6 * len(named), ncols=len(named))
        for i, (name, r) in enumerate(named):
            ax = axes[0, i]
            plot_corruptions(r, ax, color=F.color(i))
            ax.set_title(name)
        figs = [F.render(fig, "Accuracy against corruption severity (0 = clean), mean over the corruptions of each "
                         "family (Hendrycks & Dietterich 2019).")]
        fig, axes = F.new_figure(w=4.2 * len(named), h=0.22 * len(named[0][1].corruptions) + 1.4, ncols=len(named))
        for i, (name, r) in enumerate(named):
            plot_corruption_heatmap(r, axes[0, i])
            axes[0, i].set_title(name)
        figs.append(F.render(fig, "Accuracy under each corruption (rows) and severity (columns)."))
        return figs


__all__ = ["LOW_FREQUENCY", "MAX_SAMPLES", "ShiftSection", "mce_against"]
