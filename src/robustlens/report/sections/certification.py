"""Certified L2 robustness of the Gaussian-smoothed model (randomized smoothing, paper Sec. II-D; Cohen, Rosenfeld
and Kolter, ICML 2019), with the radius cap that the number of noise samples imposes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats

from ...certify.smoothing import CertifyResult, Smoothed, clopper_pearson_lower
from ...classifier import Classifier
from .. import figures as F
from ..claims import ModelClaim, PairClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, count, num, pct, versus


def radius_cap(sigma: float, n: int, alpha: float) -> float:
    """The largest L2 radius CERTIFY can return with ``n`` noise samples: ``sigma * Phi^-1(alpha^(1/n))``, reached
    when every noisy copy gets the top class (the one-sided Clopper-Pearson bound of n successes in n trials)."""
    p = float(clopper_pearson_lower(np.array([n]), int(n), float(alpha))[0])
    return float(sigma * stats.norm.ppf(p))


def _beyond_cap(h: Headline) -> str:
    if h["sigma"] / 2 > h["radius_cap"]:
        return (f"radius sigma/2 = {num(h['sigma'] / 2)} is beyond the largest radius {count(h['n_noise'])} noise "
                f"samples can certify ({num(h['radius_cap'])}): raise certify_n")
    return ""


def _certified(h: Headline) -> str:
    return f"certified accuracy {pct(h['certified_half'])} at radius sigma/2 vs {pct(h['certified_0'])} at radius 0"


def _row_label(plan: ReportPlan) -> str:
    if plan.certify_sigma is None:
        return "certified accuracy at radius sigma/2"
    return f"certified accuracy at L2 radius {num(plan.certify_sigma / 2)} (sigma {num(plan.certify_sigma)})"


@register_section("certified", order=100)
class CertificationSection(Section[CertifyResult]):
    """Cohen et al.'s CERTIFY on the Gaussian-smoothed model (noise ``certify_sigma``) for ``certify_samples``
    samples: the certified L2 radius of each and certified accuracy against the radius."""

    title = "Certified accuracy of the smoothed model"
    paper = "Sec. II-D (randomized smoothing)"
    requires = ("robustlens.certify.smoothing",)
    rows = (Row("certified_half", _row_label, "pct"),)
    claims = (
        ModelClaim(key="smoothing-certifies", statement="randomized smoothing turns a classifier into one with "
                   "certified robustness", paper="Sec. II-D", trusts_gradients=False, unjudgeable=_beyond_cap,
                   measures=(("certified_half", "certified accuracy at radius sigma/2"),
                             ("certified_0", "certified accuracy at radius 0")),
                   test=lambda h: h["certified_0"] > 0 and h["certified_half"] >= 0.5 * h["certified_0"],
                   measured=_certified,
                   rule="it holds when the smoothed model still certifies, at radius sigma/2, at least half of the "
                        "samples it certifies at radius 0"),
        PairClaim(key="robust-certifies-more", statement="the flatter geometry of robust models can be exploited for "
                  "certified robustness: smoothed, the adversarially trained model certifies more", paper="Sec. II-D",
                  measure="certified_half", label="certified accuracy at radius sigma/2", robust_larger=True,
                  kind="pct", trusts_gradients=False, unjudgeable=_beyond_cap),
    )

    def applies(self, plan: ReportPlan) -> str:
        if plan.certify_sigma is None:
            return ("the model is not smoothed: give a noise level (--certify-sigma, or ReportPlan.certify_sigma) to "
                    "certify its Gaussian-smoothed version")
        return ""

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> CertifyResult:
        assert plan.certify_sigma is not None  # applies() says why the section is skipped otherwise
        x, y = data.head(min(plan.certify_samples, len(data.y)))
        return Smoothed(clf, plan.certify_sigma).certify(x, y, n0=plan.certify_n0, n=plan.certify_n,
                                                         alpha=plan.certify_alpha,
                                                         batch_size=max(plan.certify_n, 100), seed=ctx.seed,
                                                         progress=ctx.progress)

    def headline(self, r: CertifyResult) -> dict[str, float]:
        sigma = float(r.sigma)
        acc = r.certified_accuracy([0.0, sigma / 2, sigma])
        return {"sigma": sigma, "certified_0": float(acc[0]), "certified_half": float(acc[1]),
                "certified_sigma": float(acc[2]), "abstain": float(r.abstained.double().mean()),
                "median_radius": float(r.radius[r.correct].double().median()) if bool(r.correct.any()) else 0.0,
                "n": float(r.radius.numel()), "max_radius": float(r.radius.max()),
                "radius_cap": radius_cap(sigma, r.n, r.alpha), "n_noise": float(r.n)}

    def sentence(self, h: Headline) -> str:
        s = (f"Smoothed with Gaussian noise of sigma {num(h['sigma'])}, the model is certified correct on "
             f"{pct(h['certified_0'])} of {count(h['n'])} samples at radius 0, {pct(h['certified_half'])} at radius "
             f"{num(h['sigma'] / 2)} and {pct(h['certified_sigma'])} at radius {num(h['sigma'])} (abstains on "
             f"{pct(h['abstain'])}); the largest certified L2 radius is {num(h['max_radius'])}")
        if h["max_radius"] >= h["radius_cap"] * (1 - 1e-9):
            s += (f", the cap that {count(h['n_noise'])} noise samples allow (sigma Phi^-1(alpha^(1/n))): larger "
                  "radii need more samples")
        return s + "."

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        (ref, h0), others = hs[0], hs[1:]
        return "; ".join(versus(f"smoothed {name}", h, f"smoothed {ref}", h0, "certified_half",
                                f"certified accuracy at radius {num(h['sigma'] / 2)}", "pct")
                         for name, h in others) + "."

    def figures(self, named: Sequence[tuple[str, CertifyResult]], plan: ReportPlan) -> list[Figure]:
        caps = [radius_cap(r.sigma, r.n, r.alpha) for _, r in named]
        top = max([float(r.radius.max()) for _, r in named] + caps) or 1e-3
        radii = torch.linspace(0, top * 1.1, 121, dtype=torch.float64)
        fig, axes = F.new_figure()
        ax = axes[0, 0]
        for i, (name, r) in enumerate(named):
            r.curve(radii).plot(ax, label=name)
            ax.get_lines()[-1].set_color(f"C{i}")
        for cap, n in sorted({(c, r.n) for c, (_, r) in zip(caps, named, strict=True)}):
            ax.axvline(cap, color="gray", ls=":", lw=1)
            ax.annotate(f"radius cap of n = {n}: {num(cap)}", (cap, 0.5), xytext=(-4, 0), textcoords="offset points",
                        rotation=90, ha="right", va="center", fontsize=7, color="dimgray")
        ax.set_title("Certified accuracy (smoothed)")
        return [F.render(fig, "Fraction of samples classified correctly by the smoothed model with a certified L2 "
                         "radius of at least r (randomized smoothing, Cohen et al. 2019). Dotted: the largest radius "
                         "the number n of noise samples can certify, sigma Phi^-1(alpha^(1/n)); the curve drops to 0 "
                         "there whatever the model.")]


__all__ = ["CertificationSection", "radius_cap"]
