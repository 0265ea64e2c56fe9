"""Margins inside diagonal DCT subspaces from low to high frequency (paper eq. 18, Fig. 8): where the network finds
discriminative features the margin is small, where it is invariant the margin is large."""

from __future__ import annotations

from collections.abc import Sequence

from ...classifier import Classifier
from ...geometry.subspaces import SubspaceMarginResult, diagonal_dct_subspaces, plot_margin_profile, subspace_margins
from .. import figures as F
from ..claims import ModelClaim, PairClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, compare_all, count, num, ratio_phrase


def _margins(h: Headline) -> str:
    return (f"median margin {num(h['low_margin'])} in the lowest-frequency subspace vs {num(h['high_margin'])} in "
            "the highest")


@register_section("dct", order=80)
class DCTSection(Section[SubspaceMarginResult]):
    """Margins inside ``dct_block x dct_block`` diagonal DCT subspaces, low to high frequency (eq. 18, Fig. 8)."""

    title = "Margins in DCT subspaces"
    paper = "eq. (18), Fig. 8"
    requires = ("robustlens.geometry.subspaces:subspace_margins",
                "robustlens.geometry.subspaces:diagonal_dct_subspaces")
    rows = (Row("low_margin", "median low-frequency DCT margin"),
            Row("high_margin", "median high-frequency DCT margin"))
    claims = (
        ModelClaim(key="low-frequency-features", statement="the margin is small in the low-frequency subspaces, where "
                   "the network finds its discriminative features, and large in the high-frequency ones it is "
                   "invariant to", paper="Sec. III-B1, Fig. 8",
                   measures=(("low_margin", "median margin in the lowest-frequency subspace"),
                             ("high_margin", "median margin in the highest-frequency subspace")),
                   test=lambda h: h["high_margin"] > h["low_margin"], measured=_margins,
                   rule="it holds when the median margin is larger in the highest-frequency subspace than in the "
                        "lowest"),
        PairClaim(key="robust-high-frequency", statement="adversarially trained models are more robust to "
                  "perturbations that alter the high frequencies", paper="Sec. IV-C", measure="high_margin",
                  label="median margin in the highest-frequency DCT subspace", robust_larger=True),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> SubspaceMarginResult:
        x, y = data.head(min(plan.dct_samples, len(data.y)))
        spaces = diagonal_dct_subspaces(tuple(x.shape[1:]), min(plan.dct_block, x.shape[-1]), dtype=x.dtype)
        return subspace_margins(clf, (x, y), spaces, seed=ctx.seed, batch_size=plan.batch_size,
                                progress=ctx.progress)

    def headline(self, r: SubspaceMarginResult) -> dict[str, float]:
        med = [float(v) for v in r.median]
        lo, hi = med[0], med[-1]
        return {"low_margin": lo, "high_margin": hi, "high_low_ratio": hi / lo if lo > 0 else float("nan"),
                "subspaces": float(len(med)), "samples": float(r.clean_correct.sum()), "dim": float(r.dims[0])}

    def sentence(self, h: Headline) -> str:
        ratio = ratio_phrase(h["high_margin"], h["low_margin"])
        return (f"Inside {count(h['subspaces'])} diagonal DCT subspaces of dimension {count(h['dim'])} the median "
                f"margin goes from {num(h['low_margin'])} at the lowest frequencies to {num(h['high_margin'])} at the "
                f"highest ({(ratio + ', ') if ratio else ''}over {count(h['samples'])} correctly classified samples).")

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        return (compare_all(hs, "low_margin", "median low-frequency margin")[:-1] + "; "
                + compare_all(hs, "high_margin", "median high-frequency margin"))

    def figures(self, named: Sequence[tuple[str, SubspaceMarginResult]], plan: ReportPlan) -> list[Figure]:
        fig, axes = F.new_figure(w=6, h=3.5)
        plot_margin_profile({name: r for name, r in named}, axes[0, 0])
        axes[0, 0].set_title("Margins in DCT subspaces (Fig. 8)")
        axes[0, 0].grid(alpha=0.3)
        return [F.render(fig, "Median (line), interquartile band and per-sample margins (dots) of the minimal L2 "
                         "perturbation restricted to each diagonal DCT block (eq. 18), from low to high frequency.")]


__all__ = ["DCTSection"]
