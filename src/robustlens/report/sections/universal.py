"""A universal adversarial perturbation (paper eq. 17, Fig. 5) fitted on some samples and tested on others, against
random perturbations of the same norm."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...attacks.norms import INF
from ...attacks.universal import UniversalPerturbation, UniversalResult, fooling_rate, random_fooling_rate
from ...classifier import Classifier
from ...results import Result
from .. import figures as F
from ..claims import ModelClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, compare_all, count, num, pct, ratio_phrase

UNIVERSAL_FACTOR = 2.0  # "far more often than random noise": in multiples of the random perturbations' fooling rate


@dataclass
class UniversalEvaluation(Result):
    """A universal perturbation fitted on some samples and tested on others (eq. 17, Fig. 5).

    Attributes:
        uap: the fitted :class:`~robustlens.attacks.universal.UniversalResult` (its ``fooling_rate`` is on the
            fitting samples).
        heldout_fooling_rate: fooling rate on the report's (disjoint) evaluation samples.
        random_fooling_rate: the same for random perturbations of the same norm (the baseline).
        n_fit, n_eval: samples used for each.
    """

    uap: UniversalResult
    heldout_fooling_rate: float
    random_fooling_rate: float
    n_fit: int
    n_eval: int


def norm_label(p: float) -> str:
    return "Linf" if p == INF else f"L{p:g}"


def _rates(h: Headline) -> str:
    return f"held-out fooling rate {pct(h['fooling_rate'])} vs {pct(h['random_rate'])} for random perturbations"


@register_section("universal", order=70)
class UniversalSection(Section[UniversalEvaluation]):
    """Fit a universal perturbation (eq. 17) on ``uap_samples`` samples placed after the evaluated ones, and
    measure its fooling rate on the first ``uap_eval_samples`` against random perturbations of the same norm."""

    title = "Universal adversarial perturbation"
    paper = "eq. (17), Fig. 5"
    requires = ("robustlens.attacks.universal",)
    rows = (Row("fooling_rate", "universal perturbation fooling rate (Linf {uap_eps})", "pct"),)
    claims = (
        ModelClaim(key="universal-perturbation", statement="one perturbation, the same for every image, fools the "
                   "classifier far more often than random noise of the same norm", paper="eq. (17), Fig. 5",
                   measures=(("fooling_rate", "held-out fooling rate of the universal perturbation"),
                             ("random_rate", "fooling rate of random perturbations of the same norm")),
                   test=lambda h: h["fooling_rate"] > 0 and h["fooling_rate"] >= UNIVERSAL_FACTOR * h["random_rate"],
                   measured=_rates,
                   rule=f"it holds when the universal perturbation fools at least {UNIVERSAL_FACTOR:g} times as many "
                        "held-out images as random perturbations of the same norm"),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> UniversalEvaluation:
        n_eval = min(plan.uap_eval_samples, len(data.y))
        start = max(plan.samples(len(data.y)), n_eval)
        x_fit, _ = data.take(start, plan.uap_samples)
        x_eval, _ = data.head(n_eval)
        uap = UniversalPerturbation(norm=plan.uap_norm, eps=plan.uap_eps, max_passes=plan.uap_passes,
                                    batch_size=min(32, plan.batch_size), progress=ctx.progress).fit(clf, x_fit,
                                                                                                     seed=ctx.seed)
        held = fooling_rate(clf, x_eval, uap.perturbation)
        rnd = random_fooling_rate(clf, x_eval, plan.uap_norm, plan.uap_eps, seed=ctx.seed)
        return UniversalEvaluation(uap=uap, heldout_fooling_rate=held, random_fooling_rate=rnd,
                                   n_fit=int(x_fit.shape[0]), n_eval=int(n_eval))

    def headline(self, r: UniversalEvaluation) -> dict[str, float]:
        return {"fooling_rate": r.heldout_fooling_rate, "random_rate": r.random_fooling_rate,
                "fit_rate": r.uap.fooling_rate, "eps": r.uap.eps, "p": r.uap.p, "n_eval": float(r.n_eval)}

    def sentence(self, h: Headline) -> str:
        ratio = ratio_phrase(h["fooling_rate"], h["random_rate"])
        return (f"One {norm_label(h['p'])} perturbation of norm {num(h['eps'])}, the same for every image, changes the "
                f"decision on {pct(h['fooling_rate'])} of {count(h['n_eval'])} held-out images ({pct(h['fit_rate'])} "
                f"of those it was fitted on), against {pct(h['random_rate'])} for random perturbations of the same "
                "norm" + (f" ({ratio})." if ratio else "."))

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        return compare_all(hs, "fooling_rate", "held-out fooling rate of its universal perturbation", "pct")

    def figures(self, named: Sequence[tuple[str, UniversalEvaluation]], plan: ReportPlan) -> list[Figure]:
        n = len(named)
        fig, axes = F.new_figure(w=2.6 * n, h=2.8, ncols=n)
        for i, (name, r) in enumerate(named):
            F.show_image(axes[0, i], r.uap.perturbation, f"{name}: fools {pct(r.heldout_fooling_rate)}", signed=True)
        figs = [F.render(fig, "The universal perturbations (rescaled, red positive) with their held-out fooling "
                         "rates.")]
        uni = [r.heldout_fooling_rate for _, r in named]
        rnd = [r.random_fooling_rate for _, r in named]
        bars = F.bars([name for name, _ in named], [("universal", uni), ("random, same norm", rnd)],
                      ylabel="fooling rate", title="Universal vs random perturbation",
                      ylim=(0, F.fraction_top(uni + rnd)), percent_labels=True)
        figs.append(F.render(bars, "Fooling rate (eq. 17) of the universal perturbation and of random ones of the "
                             "same norm, on the held-out images."))
        return figs


__all__ = ["UNIVERSAL_FACTOR", "UniversalEvaluation", "UniversalSection", "norm_label"]
