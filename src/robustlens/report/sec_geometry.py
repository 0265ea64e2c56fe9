"""Report sections on the geometry of the decision boundary: cross-sections (eq. 6, Fig. 3), curvature and the loss
landscape (eq. 16, Fig. 4), singular values of the normals (Sec. II-C), margins in DCT subspaces (eq. 18, Fig. 8),
random noise and the sqrt(D) law (eq. 7, 20-21), and certified accuracy of the smoothed model.

Every number comes from :mod:`robustlens.geometry` and :mod:`robustlens.certify`; this module chooses the samples,
calls them and turns their results into headline numbers, sentences and figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..classifier import Classifier
from ..errors import ConfigError
from ..geometry.curvature import HessianSpectrum, curvature_profile, hessian_eigenpairs
from ..geometry.noise import NoiseResult, SqrtDResult, noise_error_rate, sqrt_d_law
from ..geometry.normals import NormalSpectrum, collect_normals, normal_spectrum
from ..geometry.sections import SectionResult, cross_section, plot_section
from ..geometry.subspaces import SubspaceMarginResult, diagonal_dct_subspaces, subspace_margins
from ..results import Result
from ..seeding import generator
from . import figures as F
from .figures import Figure
from .plan import ReportPlan
from .sec_attacks import min_norm, minimal_norms
from .sections import (
    Named,
    ReportData,
    SectionSpec,
    correct_head,
    finite_median,
    num,
    pct,
    ratio_compare,
    ratio_phrase,
)


def _range(clf: Classifier) -> float:
    lo, hi = clf.bounds
    return float(hi - lo) if math.isfinite(hi - lo) else 1.0


def adversarial_plane(clf: Classifier, x: Tensor, y: Tensor, **kw: Any) -> SectionResult:
    """The cross-section (eq. 6) along the DeepFool normal and a random direction; where DeepFool finds no boundary
    from this input, along the loss gradient instead (the result's ``direction_names`` say which)."""
    try:
        return cross_section(clf, x, y, ("adversarial", "random"), progress=False, **kw)
    except ConfigError:
        return cross_section(clf, x, y, ("gradient", "random"), progress=False, **kw)


# ---------------------------------------------------------------------------------------------- cross-sections
@dataclass
class CrossSections(Result):
    """Cross-sections (eq. 6) through a few correctly classified samples: for each, one plane spanned by the
    adversarial (DeepFool) direction and a random one, and one spanned by two random directions (Fig. 3).

    Attributes:
        adversarial: one :class:`~robustlens.geometry.sections.SectionResult` per sample (u1 adversarial).
        random: one per sample (u1, u2 random), on a grid of half-width ``random_extent``.
        random_extent: half-width of the random planes, in L2 units.
    """

    adversarial: list[SectionResult]
    random: list[SectionResult]
    random_extent: float


def compute_sections(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> CrossSections:
    """Two cross-sections (eq. 6, Fig. 3) per sample: along the DeepFool normal and a random direction (grid of three
    times the DeepFool distance), and along two random directions (grid of half the data box's diagonal)."""
    x, y = correct_head(clf, data, plan.section_samples)
    if y.numel() == 0:
        raise ValueError("the model classifies none of the report's samples correctly: no sample to cut through")
    ext = 0.5 * _range(clf) * math.sqrt(x[0].numel())
    adv, rnd = [], []
    for i in range(y.numel()):
        adv.append(adversarial_plane(clf, x[i], y[i], resolution=plan.section_grid, seed=seed + i))
        rnd.append(cross_section(clf, x[i], y[i], ("random", "random"), extent=ext, resolution=plan.section_grid,
                                 seed=seed + i, progress=False))
    return CrossSections(adversarial=adv, random=rnd, random_extent=ext)


def _sections_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, CrossSections)
    adv = [s.axis_distance["+u1"] for s in r.adversarial]
    rnd = [v for s in r.random for v in s.axis_distance.values()]
    rnd_fin = [v for v in rnd if math.isfinite(v)]
    a = finite_median(np.asarray(adv))
    # beyond the grid counts as the grid's half-width: a lower bound, so the ratio below is a lower bound too
    rr = float(np.median([v if math.isfinite(v) else r.random_extent for v in rnd])) if rnd else float("nan")
    return {"adversarial_distance": a, "random_distance": rr, "random_ratio": rr / a if a > 0 else float("nan"),
            "random_beyond": 1.0 - len(rnd_fin) / max(1, len(rnd)), "extent": r.random_extent,
            "samples": float(len(r.adversarial))}


def _sections_sentence(h: dict[str, float]) -> str:
    s = (f"Through {int(h['samples'])} sample(s), the boundary lies {num(h['adversarial_distance'])} away along the "
         f"adversarial direction and a median {num(h['random_distance'])} along random directions "
         f"({ratio_phrase(h['random_distance'], h['adversarial_distance'])} farther)")
    if h["random_beyond"] > 0:
        s += (f"; {pct(h['random_beyond'])} of the random half-axes meet no boundary within {num(h['extent'])} "
              "(counted at that distance, so the ratio is a lower bound)")
    return s + "."


def _sections_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    return ratio_compare(hs, roles, "adversarial_distance", "distance to the boundary along the adversarial "
                         "direction of the sections", claim="a boundary farther away along the adversarial "
                         "direction", robust_larger=True)


def _sections_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    figs = []
    for name, r in named:
        assert isinstance(r, CrossSections)
        k = len(r.adversarial)
        fig, axes = F.new_figure(w=7.2, h=3.4 * k, ncols=2, nrows=k)
        for i in range(k):
            plot_section(r.adversarial[i], axes[i, 0], kind="decision")
            axes[i, 0].set_title(f"{name}: adversarial x random", fontsize=9)
            plot_section(r.random[i], axes[i, 1], kind="decision")
            axes[i, 1].set_title(f"{name}: random x random", fontsize=9)
        fig.tight_layout()
        figs.append(Figure(f"{name}: decision regions (colour: class; black: the boundary of the clean class; star: "
                           "the sample) on planes through a sample, along the adversarial direction and a random one "
                           "(left) and two random directions (right, wider grid).", F.to_data_uri(fig)))
    return figs


CROSS_SECTIONS: SectionSpec = SectionSpec(
    key="sections", title="Cross-sections of the decision boundary", paper="eq. (6), Fig. 3",
    requires=("robustlens.geometry.sections",), compute=compute_sections, headline=_sections_headline,
    sentence=_sections_sentence, compare=_sections_compare, figures=_sections_figures,
)


# ---------------------------------------------------------------------------------------------- curvature
@dataclass
class CurvatureSection(Result):
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


def compute_curvature(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> CurvatureSection:
    """Extreme eigenvalues of the input Hessian of the loss (eq. 16) on ``curvature_samples`` correctly classified
    samples, and the loss on the plane (adversarial, random) through the first one (Fig. 4)."""
    x, y = correct_head(clf, data, plan.curvature_samples)
    if y.numel() == 0:
        raise ValueError("the model classifies none of the report's samples correctly: no curvature to measure")
    k = min(plan.curvature_k, max(1, (x[0].numel() - 2) // 2))
    spec = hessian_eigenpairs(clf, x, y, k=k, which="both", return_vectors=False, seed=seed, progress=False)
    extent = float(plan.threat_l2)
    land = adversarial_plane(clf, x[0], y[0], extent=extent, resolution=plan.section_grid, seed=seed)
    loss, _ = clf.loss_and_input_grad(x, y)
    return CurvatureSection(spectrum=spec, landscape=land, extent=extent, loss=loss.detach().double().cpu())


def _curvature_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, CurvatureSection)
    top = r.spectrum.top_values[:, 0].double()
    bottom = r.spectrum.bottom_values[:, 0].double()
    loss = r.landscape.loss.double()
    centre = float(loss[loss.shape[0] // 2, loss.shape[1] // 2])
    return {"top_eigenvalue": float(top.median()), "bottom_eigenvalue": float(bottom.median()),
            "top_max": float(top.max()), "loss_rise": float(loss.max()) - centre, "extent": r.extent,
            "median_loss": float(r.loss.median()),
            "samples": float(top.numel()), "k": float(r.spectrum.top_values.shape[1])}


def _curvature_sentence(h: dict[str, float]) -> str:
    return (f"The largest eigenvalue of the input Hessian of the loss has a median of {num(h['top_eigenvalue'])} over "
            f"{int(h['samples'])} samples at a median loss of {num(h['median_loss'])} (the most negative "
            f"eigenvalue {num(h['bottom_eigenvalue'])}); on the plane of the "
            f"loss-landscape figure the loss rises by up to {num(h['loss_rise'])} within L2 distance "
            f"{num(h['extent'])}.")


def _curvature_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    out = ratio_compare(hs, roles, "top_eigenvalue", "median top Hessian eigenvalue",
                        claim="a flatter loss (smaller top curvature)", robust_larger=False)
    by_role = {roles.get(n): h for n, h in hs if roles.get(n)}
    std, rob = by_role.get("standard"), by_role.get("robust")
    if std is not None and rob is not None and std["top_eigenvalue"] < rob["top_eigenvalue"] and (
            std["median_loss"] < rob["median_loss"]):
        out += (f" The standard model's loss at these samples is lower ({num(std['median_loss'])} vs "
                f"{num(rob['median_loss'])}): where its softmax saturates the cross-entropy is locally flat, which "
                "this infinitesimal measure cannot tell from robustness.")
    return out


def _curvature_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    fig, axes = F.new_figure()
    ax = axes[0, 0]
    for i, (name, r) in enumerate(named):
        assert isinstance(r, CurvatureSection)
        prof = curvature_profile(r.spectrum).double()
        med = prof.median(0).values.numpy()
        kt = r.spectrum.top_values.shape[1]
        xs = np.arange(med.shape[0])
        ax.plot(xs[:kt], med[:kt], ".-", color=F.color(i), label=f"{name} (top)")
        ax.plot(xs[kt:] + 1, med[kt:], ".--", color=F.color(i), label=f"{name} (bottom)")
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_xlabel("eigenvalue index (top k, then bottom k)")
    ax.set_ylabel("eigenvalue")
    ax.set_title("Curvature profile (median over samples)", fontsize=10)
    ax.legend(fontsize=7)
    figs = [Figure("Sorted extreme eigenvalues of the input Hessian of the loss (Fig. 4a): a flatter profile means "
                   "a more linear loss around the data.", F.to_data_uri(fig))]
    n = len(named)
    fig, axes = F.new_figure(w=4.2 * n, h=3.6, ncols=n)
    for i, (name, r) in enumerate(named):
        assert isinstance(r, CurvatureSection)
        plot_section(r.landscape, axes[0, i], kind="loss")
        axes[0, i].set_title(f"{name}: loss landscape", fontsize=9)
    fig.tight_layout()
    figs.append(Figure("The loss on the plane through a sample along the adversarial direction (a1) and a random one "
                       "(a2), on the same grid for every model (Fig. 4b); black: the decision boundary.",
                       F.to_data_uri(fig)))
    return figs


CURVATURE: SectionSpec = SectionSpec(
    key="curvature", title="Curvature profile and loss landscape", paper="eq. (15)-(16), Fig. 4",
    requires=("robustlens.geometry.curvature", "robustlens.geometry.sections"), compute=compute_curvature,
    headline=_curvature_headline, sentence=_curvature_sentence, compare=_curvature_compare,
    figures=_curvature_figures, table=(("top_eigenvalue", "median top Hessian eigenvalue", "num"),),
)


# ---------------------------------------------------------------------------------------------- normals
@dataclass
class NormalsSection(Result):
    """The boundary normals (DeepFool's minimal L2 perturbations) of some samples and their singular values.

    Attributes:
        spectrum: the SVD of the unit normals of the correctly classified samples.
        random: the same for as many random unit vectors (the baseline of an unstructured set of directions).
        norms: the per-sample L2 distances (``inf`` where DeepFool failed).
    """

    spectrum: NormalSpectrum
    random: NormalSpectrum
    norms: Tensor


def compute_normals(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> NormalsSection:
    """Normals to the boundary at ``normals_samples`` samples (DeepFool, eq. 8-9) and their singular values
    (Sec. II-C), against those of as many random unit vectors."""
    x, y = data.head(min(plan.normals_samples, len(data.y)))
    normals = collect_normals(clf, (x, y), batch_size=plan.batch_size, seed=seed, progress=False)
    spec = normal_spectrum(normals, only_correct=True, seed=seed)
    g = generator(seed, "report-random-normals")
    rnd = normal_spectrum(torch.randn(max(1, spec.count), spec.dim, generator=g, dtype=torch.float64), seed=seed)
    return NormalsSection(spectrum=spec, random=rnd, norms=normals.norms.double().cpu())


def _normals_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, NormalsSection)
    s = r.spectrum
    return {"k50": float(s.k50), "k90": float(s.k90), "k90_fraction": s.k90_fraction, "count": float(s.count),
            "dim": float(s.dim), "top_energy": float(s.energy[0]), "random_k90": float(r.random.k90)}


def _normals_sentence(h: dict[str, float]) -> str:
    low = h["k90"] > 0 and h["k90"] < 0.75 * h["random_k90"]
    shape = ("concentrate in a low-dimensional subspace" if low else
             "are not markedly more concentrated than random directions")
    return (f"The {int(h['count'])} unit normals to the boundary {shape}: {int(h['k50'])} directions hold 50% of "
            f"their energy and {int(h['k90'])} hold 90% ({pct(h['k90_fraction'])} of D = {int(h['dim'])}), against "
            f"{int(h['random_k90'])} for as many random directions; the top direction alone holds "
            f"{pct(h['top_energy'])}.")


def _normals_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    return ratio_compare(hs, roles, "k90", "number of directions holding 90% of the normals' energy",
                         claim="a lower-rank subspace of normals", robust_larger=False)


def _normals_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    series = []
    for name, r in named:
        assert isinstance(r, NormalsSection)
        e = r.spectrum.energy.double()
        series.append((f"{name} (k90 = {r.spectrum.k90})", list(range(1, e.numel() + 1)), e.tolist()))
    r0 = named[0][1]
    assert isinstance(r0, NormalsSection)
    e = r0.random.energy.double()
    series.append((f"random directions (k90 = {r0.random.k90})", list(range(1, e.numel() + 1)), e.tolist()))
    fig = F.curves(series, xlabel="number of singular directions k", ylabel="fraction of energy",
                   title="Energy of the boundary normals", ylim=(0, 1.02), markers=False)
    figs = [Figure("Cumulative energy of the top-k singular directions of the unit normals (Sec. II-C); a curve that "
                   "rises fast means the normals share a low-dimensional subspace.", F.to_data_uri(fig))]
    sv = []
    for name, r in named:
        assert isinstance(r, NormalsSection)
        v = r.spectrum.singular_values.double()
        sv.append((name, list(range(1, v.numel() + 1)), (v / v[0].clamp_min(1e-30)).tolist()))
    fig = F.curves(sv, xlabel="index", ylabel="singular value / largest", title="Singular values of the normals",
                   logy=True, markers=False)
    figs.append(Figure("Singular values of the matrix of unit normals, relative to the largest.", F.to_data_uri(fig)))
    return figs


NORMALS: SectionSpec = SectionSpec(
    key="normals", title="Singular values of the boundary normals", paper="Sec. II-C",
    requires=("robustlens.geometry.normals",), compute=compute_normals, headline=_normals_headline,
    sentence=_normals_sentence, compare=_normals_compare, figures=_normals_figures,
    table=(("k90", "directions holding 90% of the normals' energy", "num"),),
)


# ---------------------------------------------------------------------------------------------- DCT
def compute_dct(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> SubspaceMarginResult:
    """Margins inside ``dct_block x dct_block`` diagonal DCT subspaces, low to high frequency (eq. 18, Fig. 8)."""
    x, y = data.head(min(plan.dct_samples, len(data.y)))
    spaces = diagonal_dct_subspaces(tuple(x.shape[1:]), min(plan.dct_block, x.shape[-1]), dtype=x.dtype)
    return subspace_margins(clf, (x, y), spaces, seed=seed, batch_size=plan.batch_size, progress=False)


def _dct_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, SubspaceMarginResult)
    med = [float(v) for v in r.median]
    lo, hi = med[0], med[-1]
    return {"low_margin": lo, "high_margin": hi, "high_low_ratio": hi / lo if lo > 0 else float("nan"),
            "subspaces": float(len(med)), "samples": float(r.clean_correct.sum()), "dim": float(r.dims[0])}


def _dct_sentence(h: dict[str, float]) -> str:
    more = "more" if h["high_margin"] > h["low_margin"] else "less"
    return (f"Inside {int(h['subspaces'])} diagonal DCT subspaces of dimension {int(h['dim'])} the median margin goes "
            f"from {num(h['low_margin'])} at the lowest frequencies to {num(h['high_margin'])} at the highest "
            f"({ratio_phrase(h['high_margin'], h['low_margin'])}, over {int(h['samples'])} correctly classified "
            f"samples): the model is {more} invariant to high frequencies than to low ones.")


def _dct_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    return ratio_compare(hs, roles, "low_margin", "median low-frequency margin")


def _dct_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    fig, axes = F.new_figure(w=6, h=3.5)
    ax = axes[0, 0]
    for i, (name, r) in enumerate(named):
        assert isinstance(r, SubspaceMarginResult)
        pos = np.asarray(r.positions, dtype=np.float64)
        top = r.q_high.double().clone()
        top[~torch.isfinite(top)] = float("nan")
        ax.plot(pos, r.median.double().numpy(), "o-", lw=2, color=F.color(i), label=name)
        ax.fill_between(pos, r.q_low.double().numpy(), top.numpy(), color=F.color(i), alpha=0.2)
    ax.set_xlabel("position of the DCT block on the diagonal (low -> high frequency)")
    ax.set_ylabel("L2 margin in the subspace")
    ax.set_title("Margins in DCT subspaces (Fig. 8)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return [Figure("Median (line) and interquartile band of the minimal L2 perturbation restricted to each diagonal "
                   "DCT block (eq. 18), from low to high frequency.", F.to_data_uri(fig))]


DCT: SectionSpec = SectionSpec(
    key="dct", title="Margins in DCT subspaces", paper="eq. (18), Fig. 8",
    requires=("robustlens.geometry.subspaces:subspace_margins",
              "robustlens.geometry.subspaces:diagonal_dct_subspaces"),
    compute=compute_dct, headline=_dct_headline, sentence=_dct_sentence, compare=_dct_compare, figures=_dct_figures,
    table=(("low_margin", "median low-frequency DCT margin", "num"),),
)


# ---------------------------------------------------------------------------------------------- noise
NOISE_SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
QUOTED_SIGMA = 0.3


@dataclass
class NoiseSection(Result):
    """Gaussian-noise error rate (eq. 7) and the sqrt(D) law (eq. 20-21) on correctly classified samples."""

    noise: NoiseResult
    sqrt_d: SqrtDResult


def compute_noise(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> NoiseSection:
    """``P(f(x + v) != f(x))`` for Gaussian ``v`` at sigmas scaled to the data range (eq. 7), and the distance to
    the boundary along random directions against the minimal one (eq. 20-21), the minimal L2 distance being the
    smaller of DeepFool's and FMN's."""
    x, y = correct_head(clf, data, plan.noise_samples)
    if y.numel() == 0:
        raise ValueError("the model classifies none of the report's samples correctly")
    sig = [s * _range(clf) for s in NOISE_SIGMAS]
    noise = noise_error_rate(clf, x, sig, n_draws=plan.noise_draws, seed=seed, batch_size=plan.batch_size * 10,
                             progress=False)
    ok = torch.ones(y.numel(), dtype=torch.bool)
    adv = min_norm(list(minimal_norms(clf, x, y, 2.0, plan, seed)), ok)  # the better of DeepFool and FMN
    law = sqrt_d_law(clf, x, y, adversarial_norm=adv, n_directions=plan.noise_directions, seed=seed, progress=False)
    return NoiseSection(noise=noise, sqrt_d=law)


def _noise_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, NoiseSection)
    sig = r.noise.sigmas.double()
    i = int((sig - QUOTED_SIGMA * float(sig.max())).abs().argmin())
    s = r.sqrt_d
    ok = torch.isfinite(s.adversarial_norm) & (s.adversarial_norm > 0)
    beyond = float((~torch.isfinite(s.directional[ok])).double().mean()) if bool(ok.any()) else float("nan")
    return {"sigma": float(sig[i]), "noise_error": float(r.noise.error_rate[i]), "constant": s.median_constant,
            "linear_constant": s.linear_median_constant, "dim": float(s.dim), "slope": s.slope,
            "ratio": s.median_constant * math.sqrt(s.dim), "beyond": beyond,
            "max_dist": float(s.settings.get("max_dist", float("nan")))}


def _noise_sentence(h: dict[str, float]) -> str:
    tail = (f" Gaussian noise of sigma {num(h['sigma'])} changes {pct(h['noise_error'])} of the decisions.")
    if not math.isfinite(h["ratio"]):
        return (f"{pct(h['beyond'])} of the random directions meet no boundary within {num(h['max_dist'])} (the "
                f"diagonal of the data box), so the median ratio of random to adversarial distance is unbounded: the "
                f"sqrt(D) law of eq. (21) cannot be checked on these samples." + tail)
    rel = h["constant"] / h["linear_constant"] if h["linear_constant"] > 0 else float("nan")
    verdict = ("of the order of sqrt(D), as eq. (21) predicts" if 0.2 <= rel <= 5 else
               "far from the sqrt(D) scaling of eq. (21)")
    return (f"Along random directions the boundary is a median {num(h['ratio'])} times farther than along the "
            f"adversarial one, i.e. {num(h['constant'])} sqrt(D) with D = {int(h['dim'])} (a linear classifier gives "
            f"{num(h['linear_constant'])} sqrt(D)): {verdict}." + tail)


def _noise_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    (ref, h0), others = hs[0], hs[1:]
    parts = [f"{name} changes {pct(h['noise_error'])} of its decisions under Gaussian noise of sigma "
             f"{num(h['sigma'])} vs {pct(h0['noise_error'])} for {ref}, and its random-to-adversarial distance ratio "
             f"is {num(h['ratio'])} vs {num(h0['ratio'])}" for name, h in others]
    return "; ".join(parts) + "."


def _noise_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    series = []
    for name, r in named:
        assert isinstance(r, NoiseSection)
        series.append((name, r.noise.sigmas.tolist(), r.noise.error_rate.tolist()))
    figs = [Figure("Fraction of decisions changed by isotropic Gaussian noise of standard deviation sigma (eq. 7).",
                   F.to_data_uri(F.curves(series, xlabel="noise sigma", ylabel="P(f(x+v) != f(x))",
                                          title="Gaussian noise", ylim=(0, 1.02))))]
    fig, axes = F.new_figure(w=4.6, h=4)
    ax = axes[0, 0]
    top = 0.0
    for i, (name, r) in enumerate(named):
        assert isinstance(r, NoiseSection)
        s = r.sqrt_d
        xs = math.sqrt(s.dim) * s.adversarial_norm.numpy()
        ys = s.directional.median(1).values.numpy()
        ok = np.isfinite(xs) & np.isfinite(ys)
        ax.scatter(xs[ok], ys[ok], s=12, color=F.color(i), label=f"{name}: slope {s.slope:.2f}")
        if ok.any():
            top = max(top, float(xs[ok].max()))
    t = np.linspace(0, top or 1.0, 10)
    for i, (_, r) in enumerate(named):
        ax.plot(t, r.sqrt_d.slope * t, lw=1, color=F.color(i))  # type: ignore[attr-defined]
    lin = named[0][1].sqrt_d.linear_median_constant  # type: ignore[attr-defined]
    ax.plot(t, lin * t, "k--", lw=1, label=f"linear classifier ({lin:.2f})")
    ax.set_xlabel("sqrt(D) x minimal L2 distance")
    ax.set_ylabel("median distance along random directions")
    ax.set_title("The sqrt(D) law (eq. 21)", fontsize=10)
    ax.legend(fontsize=7)
    figs.append(Figure("Per sample, the median distance to the boundary along random directions against sqrt(D) "
                       "times the minimal distance; the dashed line is the exact constant of a linear classifier.",
                       F.to_data_uri(fig)))
    return figs


NOISE: SectionSpec = SectionSpec(
    key="noise", title="Robustness to random noise and the sqrt(D) law", paper="eq. (7), (20)-(21)",
    requires=("robustlens.geometry.noise",), compute=compute_noise, headline=_noise_headline,
    sentence=_noise_sentence, compare=_noise_compare, figures=_noise_figures,
    table=(("ratio", "random / adversarial distance", "num"),),
)


# ---------------------------------------------------------------------------------------------- certified
def _certify_applies(plan: ReportPlan) -> str:
    if plan.certify_sigma is None:
        return ("the model is not smoothed: give a noise level (--certify-sigma, or ReportPlan.certify_sigma) to "
                "certify its Gaussian-smoothed version")
    return ""


def compute_certified(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> Any:
    """Cohen et al.'s CERTIFY on the Gaussian-smoothed model (noise ``certify_sigma``) for ``certify_samples``
    samples: the certified L2 radius of each and certified accuracy against the radius."""
    from ..certify import Smoothed

    assert plan.certify_sigma is not None
    x, y = data.head(min(plan.certify_samples, len(data.y)))
    return Smoothed(clf, plan.certify_sigma).certify(x, y, n0=plan.certify_n0, n=plan.certify_n,
                                                     alpha=plan.certify_alpha, batch_size=max(plan.certify_n, 100),
                                                     seed=seed)


def _certified_headline(r: Result) -> dict[str, float]:
    sigma = float(r.sigma)  # type: ignore[attr-defined]
    acc = r.certified_accuracy([0.0, sigma / 2, sigma])  # type: ignore[attr-defined]
    return {"sigma": sigma, "certified_0": float(acc[0]), "certified_half": float(acc[1]),
            "certified_sigma": float(acc[2]), "abstain": float(r.abstained.double().mean()),  # type: ignore[attr-defined]
            "median_radius": float(r.radius[r.correct].double().median()) if bool(r.correct.any())  # type: ignore[attr-defined]
            else 0.0, "n": float(r.radius.numel()), "max_radius": float(r.radius.max())}  # type: ignore[attr-defined]


def _certified_sentence(h: dict[str, float]) -> str:
    return (f"Smoothed with Gaussian noise of sigma {num(h['sigma'])}, the model is certified correct on "
            f"{pct(h['certified_0'])} of {int(h['n'])} samples at radius 0, {pct(h['certified_half'])} at radius "
            f"{num(h['sigma'] / 2)} and {pct(h['certified_sigma'])} at radius {num(h['sigma'])} (abstains on "
            f"{pct(h['abstain'])}); the largest certified L2 radius is {num(h['max_radius'])}.")


def _certified_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    (ref, h0), others = hs[0], hs[1:]
    return "; ".join(f"at radius {num(h['sigma'] / 2)} the smoothed {name} is certified on {pct(h['certified_half'])} "
                     f"vs {pct(h0['certified_half'])} for the smoothed {ref}" for name, h in others) + "."


def _certified_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    series = []
    top = max(float(r.radius.max()) for _, r in named) or 1e-3  # type: ignore[attr-defined]
    radii = torch.linspace(0, top * 1.05, 60, dtype=torch.float64)
    for name, r in named:
        c = r.curve(radii)  # type: ignore[attr-defined]
        series.append((name, c.radii.tolist(), c.accuracy.tolist()))
    fig = F.curves(series, xlabel="L2 radius", ylabel="certified accuracy", title="Certified accuracy (smoothed)",
                   ylim=(0, 1.02), markers=False)
    return [Figure("Fraction of samples classified correctly by the smoothed model with a certified L2 radius of at "
                   "least r (randomized smoothing, Cohen et al. 2019).", F.to_data_uri(fig))]


CERTIFIED: SectionSpec = SectionSpec(
    key="certified", title="Certified accuracy of the smoothed model", paper="Sec. II-D (randomized smoothing)",
    requires=("robustlens.certify.smoothing",), compute=compute_certified, headline=_certified_headline,
    sentence=_certified_sentence, compare=_certified_compare, figures=_certified_figures, applies=_certify_applies,
    table=(("certified_half", "certified accuracy at radius sigma/2", "pct"),),
)


__all__ = [
    "CERTIFIED", "CROSS_SECTIONS", "CURVATURE", "DCT", "NOISE", "NORMALS", "CrossSections", "CurvatureSection",
    "NoiseSection", "NormalsSection", "compute_certified", "compute_curvature", "compute_dct", "compute_noise",
    "compute_normals", "compute_sections",
]
