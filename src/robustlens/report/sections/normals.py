"""The normals to the decision boundary at many samples and the singular values of their matrix (paper Sec. II-C):
a few directions hold most of their energy when the normals share a low-dimensional subspace."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...classifier import Classifier
from ...geometry.normals import NormalSpectrum, collect_normals, normal_spectrum, plot_singular_values
from ...results import Result
from ...seeding import generator
from .. import figures as F
from ..claims import ModelClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, compare_all, count, pct

LOW_RANK = 0.75  # "low-dimensional": fewer than this fraction of the directions random unit vectors need


@dataclass
class NormalsSpectra(Result):
    """The boundary normals (DeepFool's minimal L2 perturbations) of some samples and their singular values.

    Attributes:
        spectrum: the SVD of the unit normals of the correctly classified samples.
        random: the same for as many random unit vectors (the baseline of an unstructured set of directions).
        norms: the per-sample L2 distances (``inf`` where DeepFool failed).
    """

    spectrum: NormalSpectrum
    random: NormalSpectrum
    norms: Tensor


def _k90s(h: Headline) -> str:
    return (f"{count(h['k90'])} directions hold 90% of the normals' energy ({pct(h['k90_fraction'])} of D = "
            f"{count(h['dim'])}), against {count(h['random_k90'])} for as many random directions")


@register_section("normals", order=60)
class NormalsSection(Section[NormalsSpectra]):
    """Normals to the boundary at ``normals_samples`` samples (DeepFool, eq. 8-9) and their singular values
    (Sec. II-C), against those of as many random unit vectors."""

    title = "Singular values of the boundary normals"
    paper = "Sec. II-C"
    requires = ("robustlens.geometry.normals",)
    rows = (Row("k90", "directions holding 90% of the normals' energy", "count"),)
    claims = (
        ModelClaim(key="low-rank-normals", statement="the normals to the decision boundary at different samples span "
                   "a low-dimensional subspace", paper="Sec. II-C",
                   measures=(("k90", "number of directions holding 90% of the normals' energy"),
                             ("random_k90", "the same number for random directions")),
                   test=lambda h: 0 < h["k90"] < LOW_RANK * h["random_k90"], measured=_k90s,
                   rule=f"it holds when the normals need fewer than {LOW_RANK:g} times as many directions as random "
                        "unit vectors to hold 90% of their energy"),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> NormalsSpectra:
        x, y = data.head(min(plan.normals_samples, len(data.y)))
        normals = collect_normals(clf, (x, y), batch_size=plan.batch_size, seed=ctx.seed, progress=ctx.progress)
        spec = normal_spectrum(normals, only_correct=True, seed=ctx.seed)
        g = generator(ctx.seed, "report-random-normals")
        rnd = normal_spectrum(torch.randn(max(1, spec.count), spec.dim, generator=g, dtype=torch.float64),
                              seed=ctx.seed)
        return NormalsSpectra(spectrum=spec, random=rnd, norms=normals.norms.double().cpu())

    def headline(self, r: NormalsSpectra) -> dict[str, float]:
        s = r.spectrum
        return {"k50": float(s.k50), "k90": float(s.k90), "k90_fraction": s.k90_fraction, "count": float(s.count),
                "dim": float(s.dim), "top_energy": float(s.energy[0]), "random_k90": float(r.random.k90)}

    def sentence(self, h: Headline) -> str:
        return (f"Of the {count(h['count'])} unit normals to the boundary, {count(h['k50'])} directions hold 50% of "
                f"the energy and {_k90s(h)}; the top direction alone holds {pct(h['top_energy'])}.")

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        return compare_all(hs, "k90", "number of directions holding 90% of the normals' energy")

    def figures(self, named: Sequence[tuple[str, NormalsSpectra]], plan: ReportPlan) -> list[Figure]:
        spectra = {name: r.spectrum for name, r in named}
        spectra["random directions"] = named[0][1].random
        fig, axes = F.new_figure()
        plot_singular_values(spectra, axes[0, 0], energy=True)
        axes[0, 0].set_title("Energy of the boundary normals")
        figs = [F.render(fig, "Cumulative energy of the top-k singular directions of the unit normals (Sec. II-C), "
                         "against as many random unit vectors; a curve that rises fast means the normals share a "
                         "low-dimensional subspace (dotted: 50, 90 and 99%).")]
        fig, axes = F.new_figure()
        plot_singular_values(spectra, axes[0, 0])
        axes[0, 0].set_title("Singular values of the normals")
        figs.append(F.render(fig, "Singular values of the matrix of unit normals, relative to the largest."))
        return figs


__all__ = ["LOW_RANK", "NormalsSection", "NormalsSpectra"]
