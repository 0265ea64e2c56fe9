"""Cross-sections of the decision boundary through a few samples (paper eq. 6, Fig. 3): along the adversarial
direction and a random one, and along two random directions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...classifier import Classifier
from ...geometry.sections import SectionResult, cross_section, plot_section
from ...results import Result
from .. import figures as F
from ..choices import adversarial_plane
from ..claims import ModelClaim, PairClaim
from ..data import ReportData, data_range
from ..figures import Figure
from ..plan import ReportPlan
from ..section import RunContext, Section, register_section
from ..text import Headline, compare_all, count, finite_median, num, pct, ratio_phrase

RANDOM_FACTOR = 3.0  # "much farther": the random-direction distance of the claim, in multiples of the adversarial one


@dataclass
class CrossSections(Result):
    """Cross-sections (eq. 6) through a few correctly classified samples: for each, one plane spanned by the
    adversarial (DeepFool) direction and a random one, and one spanned by two random directions (Fig. 3).

    Attributes:
        adversarial: one :class:`~robustlens.geometry.sections.SectionResult` per sample (u1 adversarial).
        random: one per sample (u1, u2 random), on a grid of half-width ``random_extent``.
        random_extent: half-width of the random planes, in L2 units.
        class_names: the data's class names (for the figures' colour key).
    """

    adversarial: list[SectionResult]
    random: list[SectionResult]
    random_extent: float
    class_names: list[str] | None = None


def _distances(h: Headline) -> str:
    return (f"median {num(h['random_distance'])} along random directions vs {num(h['adversarial_distance'])} along "
            "the adversarial one")


@register_section("sections", order=40)
class CrossSectionsSection(Section[CrossSections]):
    """Two cross-sections (eq. 6, Fig. 3) per sample: along the DeepFool normal and a random direction (grid of three
    times the DeepFool distance), and along two random directions (grid of half the data box's diagonal)."""

    title = "Cross-sections of the decision boundary"
    paper = "eq. (6), Fig. 3"
    requires = ("robustlens.geometry.sections",)
    claims = (
        ModelClaim(key="random-far", statement="in random cross-sections the decision boundary lies far from the "
                   "sample, much farther than along the adversarial direction", paper="Sec. II-A, Fig. 3(d)",
                   measures=(("random_distance", "median distance to the boundary along random directions"),
                             ("adversarial_distance", "distance along the adversarial direction")),
                   test=lambda h: h["random_distance"] >= RANDOM_FACTOR * h["adversarial_distance"],
                   measured=_distances,
                   rule=f"it holds when the random-direction distance is at least {RANDOM_FACTOR:g} times the "
                        "adversarial one (a random half-axis that meets no boundary counts at the grid's edge)"),
        PairClaim(key="farther-adversarial", statement="adversarially trained networks push the boundary away along "
                  "the adversarial direction", paper="Sec. II-D", measure="adversarial_distance",
                  label="distance to the boundary along the adversarial direction", robust_larger=True),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> CrossSections:
        x, y = data.correct_head(clf, plan.section_samples, purpose="no sample to cut through")
        ext = 0.5 * data_range(clf) * math.sqrt(x[0].numel())
        adv, rnd = [], []
        for i in range(y.numel()):
            adv.append(adversarial_plane(clf, x[i], y[i], resolution=plan.section_grid, seed=ctx.seed + i,
                                         progress=ctx.progress))
            rnd.append(cross_section(clf, x[i], y[i], ("random", "random"), extent=ext, resolution=plan.section_grid,
                                     seed=ctx.seed + i, progress=ctx.progress))
        return CrossSections(adversarial=adv, random=rnd, random_extent=ext, class_names=data.class_names)

    def headline(self, r: CrossSections) -> dict[str, float]:
        adv = [s.axis_distance["+u1"] for s in r.adversarial]
        rnd = [v for s in r.random for v in s.axis_distance.values()]
        rnd_fin = [v for v in rnd if math.isfinite(v)]
        a = finite_median(np.asarray(adv))
        # beyond the grid counts as the grid's half-width: a lower bound, so the ratio below is a lower bound too
        rr = float(np.median([v if math.isfinite(v) else r.random_extent for v in rnd])) if rnd else float("nan")
        return {"adversarial_distance": a, "random_distance": rr, "random_ratio": rr / a if a > 0 else float("nan"),
                "random_beyond": 1.0 - len(rnd_fin) / max(1, len(rnd)), "extent": r.random_extent,
                "samples": float(len(r.adversarial))}

    def sentence(self, h: Headline) -> str:
        ratio = ratio_phrase(h["random_distance"], h["adversarial_distance"])
        s = (f"Through {count(h['samples'])} sample(s), the boundary lies {num(h['adversarial_distance'])} away along "
             f"the adversarial direction and a median {num(h['random_distance'])} along random directions"
             + (f" ({ratio} farther)" if ratio else ""))
        if h["random_beyond"] > 0:
            s += (f"; {pct(h['random_beyond'])} of the random half-axes meet no boundary within {num(h['extent'])} "
                  "(counted at that distance, so the ratio is a lower bound)")
        return s + "."

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        return compare_all(hs, "adversarial_distance", "distance to the boundary along the adversarial direction")

    def figures(self, named: Sequence[tuple[str, CrossSections]], plan: ReportPlan) -> list[Figure]:
        figs = []
        for name, r in named:
            k = len(r.adversarial)
            fig, axes = F.new_figure(w=8.4, h=3.4 * k, ncols=2, nrows=k)
            for i in range(k):
                plot_section(r.adversarial[i], axes[i, 0], kind="decision", class_names=r.class_names)
                axes[i, 0].set_title(f"{name}: adversarial x random", fontsize=9)
                plot_section(r.random[i], axes[i, 1], kind="decision", class_names=r.class_names)
                axes[i, 1].set_title(f"{name}: random x random", fontsize=9)
            fig.tight_layout()
            figs.append(F.render(fig, f"{name}: decision regions (colour: the class, see the key; black: the boundary "
                                 "of the clean class; star: the sample) on planes through a sample, along the "
                                 "adversarial direction and a random one (left) and two random directions (right, "
                                 "wider grid); both axes in L2 units."))
        return figs


__all__ = ["RANDOM_FACTOR", "CrossSections", "CrossSectionsSection"]
