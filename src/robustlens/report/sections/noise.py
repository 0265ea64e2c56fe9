"""Robustness to random noise (paper eq. 7) and the sqrt(D) law (eq. 20-21): along random directions the boundary
is about sqrt(D) times farther than along the adversarial one."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ...classifier import Classifier
from ...geometry.noise import NoiseResult, SqrtDResult, noise_error_rate, plot_noise, plot_sqrt_d, sqrt_d_law
from ...results import Result
from .. import figures as F
from ..choices import boundary_distance
from ..claims import ModelClaim, PairClaim
from ..data import ReportData, data_range
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, num, pct, versus

NOISE_SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)  # multiples of the data range
QUOTED_SIGMA = 0.3  # the sigma quoted in sentences and the table, as a multiple of the data range
SQRT_D_FACTOR = 5.0  # "of the order of sqrt(D)": within this factor of a linear classifier's constant


@dataclass
class NoiseRobustness(Result):
    """Gaussian-noise error rate (eq. 7) and the sqrt(D) law (eq. 20-21) on correctly classified samples."""

    noise: NoiseResult
    sqrt_d: SqrtDResult


def _constants(h: Headline) -> str:
    return (f"random / adversarial distance {num(h['ratio'])} = {num(h['constant'])} sqrt(D) with D = "
            f"{num(h['dim'])}, against {num(h['linear_constant'])} sqrt(D) for a linear classifier")


def _within(h: Headline) -> bool:
    rel = h["constant"] / h["linear_constant"] if h["linear_constant"] > 0 else math.nan
    return 1 / SQRT_D_FACTOR <= rel <= SQRT_D_FACTOR


@register_section("noise", order=90)
class NoiseSection(Section[NoiseRobustness]):
    """``P(f(x + v) != f(x))`` for Gaussian ``v`` at sigmas scaled to the data range (eq. 7), and the distance to the
    boundary along random directions against the minimal one (eq. 20-21), the minimal L2 distance being the smaller
    of DeepFool's and FMN's."""

    title = "Robustness to random noise and the sqrt(D) law"
    paper = "eq. (7), (20)-(21)"
    requires = ("robustlens.geometry.noise",)
    rows = (Row("ratio", "random / adversarial distance"),
            Row("noise_error", f"decisions changed by Gaussian noise of sigma {QUOTED_SIGMA:g} x data range", "pct"))
    claims = (
        ModelClaim(key="sqrt-d", statement="the distance to the boundary along random directions is of the order of "
                   "sqrt(D) times the minimal one", paper="eq. (20)-(21)",
                   measures=(("constant", "median random / adversarial distance ratio over sqrt(D)"),
                             ("linear_constant", "the same constant for a linear classifier")),
                   test=_within, measured=_constants,
                   rule=f"it holds when the constant is within a factor {SQRT_D_FACTOR:g} of a linear classifier's"),
        PairClaim(key="noise-robustness", statement="adversarial training also makes the classifier more robust to "
                  "random noise", paper="eq. (21), Sec. IV-C", measure="noise_error",
                  label=f"fraction of decisions changed by Gaussian noise of sigma {QUOTED_SIGMA:g} x data range",
                  robust_larger=False, kind="pct", trusts_gradients=False),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> NoiseRobustness:
        x, y = data.correct_head(clf, plan.noise_samples, purpose="no sample to add noise to")
        sig = [s * data_range(clf) for s in NOISE_SIGMAS]
        noise = noise_error_rate(clf, x, sig, n_draws=plan.noise_draws, seed=ctx.seed, batch_size=plan.batch_size * 10,
                                 progress=ctx.progress)
        _, adv = boundary_distance(clf, x, y, 2.0, plan, seed=ctx.seed, progress=ctx.progress)
        law = sqrt_d_law(clf, x, y, adversarial_norm=adv, n_directions=plan.noise_directions, seed=ctx.seed,
                         progress=ctx.progress)
        return NoiseRobustness(noise=noise, sqrt_d=law)

    def headline(self, r: NoiseRobustness) -> dict[str, float]:
        sig = r.noise.sigmas.double()
        i = int((sig - QUOTED_SIGMA * float(sig.max())).abs().argmin())
        s = r.sqrt_d
        ok = torch.isfinite(s.adversarial_norm) & (s.adversarial_norm > 0)
        beyond = float((~torch.isfinite(s.directional[ok])).double().mean()) if bool(ok.any()) else float("nan")
        return {"sigma": float(sig[i]), "noise_error": float(r.noise.error_rate[i]), "constant": s.median_constant,
                "linear_constant": s.linear_median_constant, "dim": float(s.dim), "slope": s.slope,
                "ratio": s.median_constant * math.sqrt(s.dim), "beyond": beyond,
                "max_dist": float(s.settings.get("max_dist", float("nan")))}

    def sentence(self, h: Headline) -> str:
        tail = f" Gaussian noise of sigma {num(h['sigma'])} changes {pct(h['noise_error'])} of the decisions."
        if not math.isfinite(h["ratio"]):
            return (f"{pct(h['beyond'])} of the random directions meet no boundary within {num(h['max_dist'])} (the "
                    "diagonal of the data box), so the median ratio of random to adversarial distance is unbounded."
                    + tail)
        return (f"Along random directions the boundary is a median {num(h['ratio'])} times farther than along the "
                f"adversarial one, i.e. {num(h['constant'])} sqrt(D) with D = {num(h['dim'])} (a linear classifier "
                f"gives {num(h['linear_constant'])} sqrt(D))." + tail)

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        (ref, h0), others = hs[0], hs[1:]
        parts = [versus(name, h, ref, h0, "noise_error", f"error rate under noise of sigma {num(h['sigma'])}", "pct")
                 + " and " + versus(name, h, ref, h0, "ratio", "random-to-adversarial distance ratio")
                 for name, h in others]
        return "; ".join(parts) + "."

    def figures(self, named: Sequence[tuple[str, NoiseRobustness]], plan: ReportPlan) -> list[Figure]:
        fig, axes = F.new_figure()
        for i, (name, r) in enumerate(named):
            plot_noise(r.noise, axes[0, 0], label=name, color=f"C{i}")
        axes[0, 0].set_ylim(0, 1.02)
        axes[0, 0].set_title("Gaussian noise")
        axes[0, 0].grid(alpha=0.3)
        figs = [F.render(fig, "Fraction of decisions changed by isotropic Gaussian noise of standard deviation sigma "
                         "(eq. 7), with its 95% interval.")]
        fig, axes = F.new_figure(w=4.8, h=4)
        plot_sqrt_d({name: r.sqrt_d for name, r in named}, axes[0, 0])
        axes[0, 0].set_title("The sqrt(D) law (eq. 21)")
        figs.append(F.render(fig, "Per sample, the median distance to the boundary along random directions against "
                             "sqrt(D) times the minimal distance; the dashed line is the exact constant of a linear "
                             "classifier."))
        return figs


__all__ = ["NOISE_SIGMAS", "QUOTED_SIGMA", "SQRT_D_FACTOR", "NoiseRobustness", "NoiseSection"]
