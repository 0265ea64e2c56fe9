"""The curvature profile of the loss (paper eq. 15-16, Fig. 4a) and a loss-landscape section (Fig. 4b)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ...classifier import Classifier
from ...geometry.hessian import HessianSpectrum, hessian_eigenpairs, plot_curvature_profile
from ...geometry.sections import SectionResult, plot_section
from ...results import Result
from .. import figures as F
from ..choices import adversarial_plane
from ..claims import PairClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, compare_all, count, finite, num


@dataclass
class CurvatureLandscape(Result):
    """The curvature profile of the loss (eq. 16, Fig. 4a) and a loss-landscape section (Fig. 4b).

    Attributes:
        spectrum: top and bottom eigenvalues of the input Hessian of the cross-entropy, per sample (Lanczos).
        landscape: the loss on the plane along the adversarial direction and a random one through the first sample,
            on a grid of half-width ``extent`` (the same for every model).
        loss: the cross-entropy at each sample of the spectrum (the curvature of the loss vanishes where the softmax
            saturates, so it is read together with the loss).
    """

    spectrum: HessianSpectrum
    landscape: SectionResult
    extent: float
    loss: Tensor


@register_section("curvature", order=50)
class CurvatureSection(Section[CurvatureLandscape]):
    """Extreme eigenvalues of the input Hessian of the loss (eq. 16) on ``curvature_samples`` correctly classified
    samples, and the loss on the plane (adversarial, random) through the first one (Fig. 4)."""

    title = "Curvature profile and loss landscape"
    paper = "eq. (15)-(16), Fig. 4"
    requires = ("robustlens.geometry.hessian", "robustlens.geometry.sections")
    rows = (Row("top_eigenvalue", "median top Hessian eigenvalue"),)
    claims = (
        PairClaim(key="flatter-loss", statement="adversarially trained networks have a flatter loss landscape (lower "
                  "curvature)", paper="Sec. II-D, Fig. 4", measure="top_eigenvalue",
                  label="median top eigenvalue of the input Hessian of the loss", robust_larger=False),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> CurvatureLandscape:
        x, y = data.correct_head(clf, plan.curvature_samples, purpose="no curvature to measure")
        k = min(plan.curvature_k, max(1, (x[0].numel() - 2) // 2))
        spec = hessian_eigenpairs(clf, x, y, k=k, which="both", return_vectors=False, seed=ctx.seed,
                                  progress=ctx.progress)
        extent = float(plan.threat_l2)
        land = adversarial_plane(clf, x[0], y[0], extent=extent, resolution=plan.section_grid, seed=ctx.seed,
                                 progress=ctx.progress)
        loss, _ = clf.loss_and_input_grad(x, y)
        return CurvatureLandscape(spectrum=spec, landscape=land, extent=extent, loss=loss.detach().double().cpu())

    def headline(self, r: CurvatureLandscape) -> dict[str, float]:
        top = r.spectrum.top_values[:, 0].double()
        bottom = r.spectrum.bottom_values[:, 0].double()
        loss = r.landscape.loss.double()
        centre = float(loss[loss.shape[0] // 2, loss.shape[1] // 2])
        return {"top_eigenvalue": float(top.median()), "bottom_eigenvalue": float(bottom.median()),
                "top_max": float(top.max()), "loss_rise": float(loss.max()) - centre, "extent": r.extent,
                "median_loss": float(r.loss.median()),
                "samples": float(top.numel()), "k": float(r.spectrum.top_values.shape[1])}

    def sentence(self, h: Headline) -> str:
        return (f"The largest eigenvalue of the input Hessian of the loss has a median of {num(h['top_eigenvalue'])} "
                f"over {count(h['samples'])} samples at a median loss of {num(h['median_loss'])} (the most negative "
                f"eigenvalue {num(h['bottom_eigenvalue'])}); on the plane of the loss-landscape figure the loss rises "
                f"by up to {num(h['loss_rise'])} within L2 distance {num(h['extent'])}.")

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        out = compare_all(hs, "top_eigenvalue", "median top Hessian eigenvalue")
        (ref, h0), others = hs[0], hs[1:]
        for name, h in others:
            flatter, other = ((name, h), (ref, h0)) if h["top_eigenvalue"] < h0["top_eigenvalue"] else ((ref, h0),
                                                                                                      (name, h))
            if finite(flatter[1]["median_loss"]) and flatter[1]["median_loss"] < other[1]["median_loss"]:
                out += (f" {flatter[0]}'s loss at these samples is also lower ({num(flatter[1]['median_loss'])} vs "
                        f"{num(other[1]['median_loss'])}): where the softmax saturates the cross-entropy is locally "
                        "flat, which this infinitesimal measure cannot tell from robustness.")
        return out

    def figures(self, named: Sequence[tuple[str, CurvatureLandscape]], plan: ReportPlan) -> list[Figure]:
        fig, axes = F.new_figure()
        dim = int(named[0][1].landscape.directions[0].numel())
        plot_curvature_profile({name: r.spectrum for name, r in named}, axes[0, 0], dim=dim)
        axes[0, 0].set_title("Curvature profile (median over samples)")
        figs = [F.render(fig, "Sorted extreme eigenvalues of the input Hessian of the loss (Fig. 4a): a flatter "
                         "profile means a more linear loss around the data.")]
        n = len(named)
        losses = [r.landscape.loss.double().numpy() for _, r in named]
        lo = float(min(np.nanmin(v) for v in losses))
        hi = float(max(np.nanmax(v) for v in losses))
        fig, axes = F.new_figure(w=4.2 * n, h=3.6, ncols=n)
        for i, (name, r) in enumerate(named):
            plot_section(r.landscape, axes[0, i], kind="loss", vmin=lo, vmax=hi)
            axes[0, i].set_title(f"{name}: loss landscape", fontsize=9)
        fig.tight_layout()
        figs.append(F.render(fig, "The loss on the plane through a sample along the adversarial direction (a1) and a "
                             "random one (a2), on the same grid and the same colour scale for every model (Fig. 4b); "
                             "black: the decision boundary."))
        return figs


__all__ = ["CurvatureLandscape", "CurvatureSection"]
