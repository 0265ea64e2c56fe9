"""Report sections computed by attacks: robust accuracy and distances to the boundary (eq. 12-13), example
adversarial images (Fig. 1), the universal perturbation (eq. 17, Fig. 5) and the gradient-masking sanity flags.

Every number comes from :mod:`robustlens.attacks`; this module only chooses the samples, runs the attacks and turns
their results into headline numbers, sentences and figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..attacks.base import AttackResult
from ..attacks.deepfool import DeepFool
from ..attacks.fmn import FMN
from ..attacks.pgd import PGD
from ..attacks.sanity import SanityReport, gradient_masking_checks
from ..attacks.universal import UniversalPerturbation, UniversalResult, fooling_rate, random_fooling_rate
from ..classifier import Classifier
from ..norms import INF
from ..results import Result
from . import figures as F
from .figures import Figure
from .plan import ReportPlan
from .sections import (
    Named,
    ReportData,
    SectionSpec,
    claim_clause,
    correct_head,
    finite_median,
    num,
    pct,
    ratio_compare,
    ratio_phrase,
)


# ---------------------------------------------------------------------------------------------- robustness
@dataclass
class NormRobustness(Result):
    """Robustness in one Lp norm.

    Attributes:
        p: the norm (2 or inf).
        eps: the grid of the robust-accuracy curve.
        robust_accuracy: eq. (12) at each eps, from the per-sample minimal norms (a sample counts as robust at eps
            when it is classified correctly and no attack found a perturbation of norm <= eps).
        distance: per-sample distance to the boundary, the smaller of DeepFool's and FMN's minimal norms (eq. 8);
            0 for misclassified samples, ``inf`` where neither attack succeeded.
        deepfool, fmn: the per-sample norms each attack found (``inf`` where it failed).
        threat_eps: the eps quoted in sentences; pgd_success: where PGD at ``threat_eps`` fooled the sample.
        robust_at_threat: eq. (12) at ``threat_eps`` against all three attacks (minimal norms and PGD).
    """

    p: float
    eps: list[float]
    robust_accuracy: list[float]
    distance: Tensor
    deepfool: Tensor
    fmn: Tensor
    threat_eps: float
    pgd_success: Tensor
    robust_at_threat: float


@dataclass
class RobustnessResult(Result):
    """Robust accuracy vs eps (eq. 12) and the distribution of distances to the boundary (eq. 13), in L2 and Linf.

    Attributes:
        n: samples evaluated; clean_correct: which of them are classified correctly.
        norms: ``{"L2": ..., "Linf": ...}``.
    """

    n: int
    clean_correct: Tensor
    norms: dict[str, NormRobustness] = field(default_factory=dict)


def minimal_norms(clf: Classifier, x: Tensor, y: Tensor, p: float, plan: ReportPlan, seed: int
                  ) -> tuple[AttackResult, AttackResult]:
    """DeepFool's and FMN's minimal Lp perturbations (eq. 8-9) of ``x`` with the plan's iteration counts."""
    df = _batched(DeepFool(norm=p, max_iter=plan.deepfool_iter), clf, x, y, plan, seed)
    fm = _batched(FMN(norm=p, steps=plan.fmn_steps), clf, x, y, plan, seed)
    return df, fm


def min_norm(results: list[AttackResult], correct: Tensor) -> Tensor:
    """Per sample the smallest norm any of ``results`` found (``inf`` where all failed), 0 where misclassified."""
    d = torch.stack([r.norm.double().cpu() for r in results]).amin(0)
    return torch.where(correct, d, torch.zeros_like(d))


def compute_robustness(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> RobustnessResult:
    """Minimal perturbations by DeepFool (eq. 9) and FMN, per sample the smaller of the two, give the distance to
    the boundary (eq. 8, 13) and robust accuracy at every eps of the grid (eq. 12); PGD at the threat eps
    (eq. 10-11) checks the curve where it is quoted."""
    x, y = data.head(plan.samples(len(data.y)))
    correct = (clf.predict(x) == y.to(clf.device)).cpu()
    out = RobustnessResult(n=int(y.numel()), clean_correct=correct)
    for name, p, grid, threat in (("L2", 2.0, plan.eps_l2, plan.threat_l2),
                                  ("Linf", INF, plan.eps_linf, plan.threat_linf)):
        df, fm = minimal_norms(clf, x, y, p, plan, seed)
        pg = _batched(PGD(norm=p, eps=threat, steps=plan.pgd_steps), clf, x, y, plan, seed)
        dist = min_norm([df, fm], correct)
        acc = [float((correct & (dist > e + 1e-12)).double().mean()) for e in grid]
        at_threat = correct & (dist > threat + 1e-12) & ~pg.success.cpu()
        out.norms[name] = NormRobustness(
            p=p, eps=list(grid), robust_accuracy=acc, distance=dist, deepfool=df.norm.double().cpu(),
            fmn=fm.norm.double().cpu(), threat_eps=float(threat), pgd_success=pg.success.cpu(),
            robust_at_threat=float(at_threat.double().mean()),
        )
    return out


def _batched(attack: object, clf: Classifier, x: Tensor, y: Tensor, plan: ReportPlan, seed: int) -> AttackResult:
    """Run ``attack`` in chunks of ``plan.batch_size`` (sample indices keep random draws batch-independent)."""
    parts = []
    for s in range(0, x.shape[0], plan.batch_size):
        idx = torch.arange(s, min(x.shape[0], s + plan.batch_size))
        parts.append(attack(clf, x[idx], y[idx], seed=seed, indices=idx))  # type: ignore[operator]
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return AttackResult(
        attack=first.attack, p=first.p, clean=torch.cat([r.clean for r in parts]),
        adversarial=torch.cat([r.adversarial for r in parts]), labels=torch.cat([r.labels for r in parts]),
        success=torch.cat([r.success for r in parts]), clean_correct=torch.cat([r.clean_correct for r in parts]),
        norm=torch.cat([r.norm for r in parts]),
        queries={k: sum(r.queries.get(k, 0) for r in parts) for k in ("forward", "backward")}, eps=first.eps,
        settings=first.settings,
    )


def _robustness_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, RobustnessResult)
    out: dict[str, float] = {"clean_accuracy": float(r.clean_correct.double().mean())}
    for name, nr in r.norms.items():
        d = nr.distance[r.clean_correct]
        key = name.lower()
        out[f"median_{key}"] = finite_median(d) if d.numel() else float("nan")
        fin = d[torch.isfinite(d)]
        out[f"mean_{key}"] = float(fin.mean()) if fin.numel() else float("nan")  # eq. (13) over correct samples
        out[f"robust_{key}"] = nr.robust_at_threat
        out[f"threat_{key}"] = nr.threat_eps
        out[f"failed_{key}"] = float((~torch.isfinite(d)).double().mean()) if d.numel() else 0.0
    return out


def _robustness_sentence(h: dict[str, float]) -> str:
    s = (f"Over the correctly classified samples the median distance to the boundary is {num(h['median_l2'])} in L2 "
         f"and {num(h['median_linf'])} in Linf (eq. 13 mean L2 distance {num(h['mean_l2'])}); robust accuracy is "
         f"{pct(h['robust_l2'])} at L2 eps = {num(h['threat_l2'])} and {pct(h['robust_linf'])} at Linf eps = "
         f"{num(h['threat_linf'])}.")
    failed = max(h.get("failed_l2", 0.0), h.get("failed_linf", 0.0))
    if failed > 0:
        s += f" No attack crossed the boundary for {pct(failed)} of the samples (their distance counts as infinite)."
    return s


def _robustness_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    (ref, h0), others = hs[0], hs[1:]
    parts = []
    for name, h in others:
        parts.append(f"{name}'s median distance to the boundary is {ratio_phrase(h['median_l2'], h0['median_l2'])} "
                     f"{ref}'s in L2 ({num(h['median_l2'])} vs {num(h0['median_l2'])}) and "
                     f"{ratio_phrase(h['median_linf'], h0['median_linf'])} in Linf ({num(h['median_linf'])} vs "
                     f"{num(h0['median_linf'])}); its robust accuracy at Linf eps = {num(h['threat_linf'])} is "
                     f"{pct(h['robust_linf'])} vs {pct(h0['robust_linf'])}")
    return "; ".join(parts) + "." + claim_clause(hs, roles, "median_l2", "larger margins (L2 distances to the "
                                                 "boundary)", robust_larger=True)


def _robustness_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    figs = []
    for norm in ("L2", "Linf"):
        series = []
        hist = []
        for name, r in named:
            assert isinstance(r, RobustnessResult)
            nr = r.norms[norm]
            series.append((name, nr.eps, nr.robust_accuracy))
            d = nr.distance[r.clean_correct]
            hist.append((name, d[torch.isfinite(d)].tolist()))
        fig = F.curves(series, xlabel=f"{norm} eps", ylabel="robust accuracy", title=f"Robust accuracy vs {norm} eps",
                       ylim=(0, 1.02))
        figs.append(Figure(f"Robust accuracy (eq. 12) against {norm} perturbations of norm <= eps, from the "
                           "per-sample minimal norms of DeepFool and FMN.", F.to_data_uri(fig)))
        fig = F.histograms(hist, xlabel=f"{norm} distance to the boundary", title=f"{norm} distances (eq. 13)")
        figs.append(Figure(f"Distribution of the {norm} distance to the decision boundary of the correctly "
                           "classified samples (dashed: medians).", F.to_data_uri(fig)))
    return figs


ROBUSTNESS: SectionSpec = SectionSpec(
    key="robustness", title="Robust accuracy and distance to the boundary", paper="eq. (12)-(13)",
    requires=("robustlens.attacks.deepfool", "robustlens.attacks.fmn", "robustlens.attacks.pgd"),
    compute=compute_robustness, headline=_robustness_headline, sentence=_robustness_sentence,
    compare=_robustness_compare, figures=_robustness_figures,
    table=(("median_l2", "median L2 distance to the boundary", "num"),
           ("median_linf", "median Linf distance to the boundary", "num"),
           ("robust_l2", "robust accuracy at the L2 threat eps", "pct"),
           ("robust_linf", "robust accuracy at the Linf threat eps", "pct")),
)


# ---------------------------------------------------------------------------------------------- examples
EXAMPLE_NORMS: tuple[tuple[str, float], ...] = (("L1", 1.0), ("L2", 2.0), ("Linf", INF))


@dataclass
class ExamplesResult(Result):
    """Minimal adversarial examples of a few correctly classified images in L1, L2 and Linf (Fig. 1).

    Attributes:
        clean: ``(k, *input_shape)``; labels: their labels.
        adversarial: per norm name, ``(k, *input_shape)`` the adversarial images (the clean image where FMN failed).
        norms: per norm name, ``(k,)`` the perturbation norm in that norm (``inf`` where it failed).
        predictions: per norm name, the class each adversarial image is given.
        changed_pixels: per norm name, ``(k,)`` input coordinates changed by more than 1e-3 (sparsity).
    """

    clean: Tensor
    labels: Tensor
    adversarial: dict[str, Tensor]
    norms: dict[str, Tensor]
    predictions: dict[str, Tensor]
    changed_pixels: dict[str, Tensor]


def compute_examples(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> ExamplesResult:
    """FMN's minimal L1, L2 and Linf perturbations (eq. 8-9) of the first ``n_examples`` correctly classified
    images (the three kinds of perturbation of the paper's Fig. 1)."""
    x, y = correct_head(clf, data, plan.n_examples)
    if y.numel() == 0:
        raise ValueError("the model classifies none of the report's samples correctly: no example to perturb")
    adv, norms, preds, changed = {}, {}, {}, {}
    for name, p in EXAMPLE_NORMS:
        res = FMN(norm=p, steps=2 * plan.fmn_steps)(clf, x, y, seed=seed)
        adv[name] = res.adversarial.cpu()
        norms[name] = res.norm.double().cpu()
        preds[name] = clf.predict(res.adversarial).cpu()
        changed[name] = ((res.adversarial - x).abs().flatten(1) > 1e-3).sum(1).cpu()
    return ExamplesResult(clean=x.cpu(), labels=y.cpu(), adversarial=adv, norms=norms, predictions=preds,
                          changed_pixels=changed)


def _examples_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, ExamplesResult)
    out: dict[str, float] = {"k": float(r.labels.numel()), "dim": float(r.clean[0].numel())}
    for name, _ in EXAMPLE_NORMS:
        key = name.lower()
        out[f"median_{key}"] = finite_median(r.norms[name])
        ok = torch.isfinite(r.norms[name])
        out[f"pixels_{key}"] = float(r.changed_pixels[name][ok].double().median()) if bool(ok.any()) else float("nan")
    return out


def _examples_sentence(h: dict[str, float]) -> str:
    def norm(key: str) -> str:
        v = h[f"median_{key}"]
        return num(v) if np.isfinite(v) else "(none found)"

    def pixels(key: str) -> str:
        v = h[f"pixels_{key}"]
        return num(v) if np.isfinite(v) else "(none found)"

    return (f"For {int(h['k'])} correctly classified image(s) FMN's smallest perturbations have median norms "
            f"L1 {norm('l1')}, L2 {norm('l2')} and Linf {norm('linf')}; the L1 perturbation changes a median of "
            f"{pixels('l1')} of {int(h['dim'])} input values, the Linf one {pixels('linf')}.")


def _examples_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    return ratio_compare(hs, roles, "median_l2", "median L2 norm of the shown examples")


def _examples_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    figs = []
    for name, r in named:
        assert isinstance(r, ExamplesResult)
        k = r.labels.numel()
        fig, axes = F.new_figure(w=1.45 * 7, h=1.6 * k, ncols=7, nrows=k)
        for i in range(k):
            F.show_image(axes[i, 0], r.clean[i], f"clean: {int(r.labels[i])}")
            for j, (nm, _) in enumerate(EXAMPLE_NORMS):
                pred = int(r.predictions[nm][i])
                F.show_image(axes[i, 1 + 2 * j], r.adversarial[nm][i], f"{nm} {num(float(r.norms[nm][i]))} -> {pred}")
                F.show_image(axes[i, 2 + 2 * j], r.adversarial[nm][i] - r.clean[i], f"{nm} perturbation",
                             signed=True)
        figs.append(Figure(f"{name}: clean images, their minimal L1, L2 and Linf adversarial examples (FMN) with the "
                           "norm and the new class, and the perturbations (rescaled, red positive).",
                           F.to_data_uri(fig)))
    return figs


EXAMPLES: SectionSpec = SectionSpec(
    key="examples", title="Adversarial examples in L1, L2 and Linf", paper="eq. (8)-(9), Fig. 1",
    requires=("robustlens.attacks.fmn",), compute=compute_examples, headline=_examples_headline,
    sentence=_examples_sentence, compare=_examples_compare, figures=_examples_figures,
)


# ---------------------------------------------------------------------------------------------- universal
@dataclass
class UniversalSection(Result):
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


def compute_universal(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> UniversalSection:
    """Fit a universal perturbation (eq. 17) on ``uap_samples`` samples placed after the evaluated ones, and
    measure its fooling rate on the first ``uap_eval_samples`` against random perturbations of the same norm."""
    n_eval = min(plan.uap_eval_samples, len(data.y))
    start = max(plan.samples(len(data.y)), n_eval)
    x_fit, _ = data.take(start, plan.uap_samples)
    x_eval, _ = data.head(n_eval)
    uap = UniversalPerturbation(norm=plan.uap_norm, eps=plan.uap_eps, max_passes=plan.uap_passes,
                                batch_size=min(32, plan.batch_size), progress=False).fit(clf, x_fit, seed=seed)
    held = fooling_rate(clf, x_eval, uap.perturbation)
    rnd = random_fooling_rate(clf, x_eval, plan.uap_norm, plan.uap_eps, seed=seed)
    return UniversalSection(uap=uap, heldout_fooling_rate=held, random_fooling_rate=rnd, n_fit=int(x_fit.shape[0]),
                            n_eval=int(n_eval))


def _universal_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, UniversalSection)
    return {"fooling_rate": r.heldout_fooling_rate, "random_rate": r.random_fooling_rate,
            "fit_rate": r.uap.fooling_rate, "eps": r.uap.eps, "p": r.uap.p, "n_eval": float(r.n_eval)}


def _pname(p: float) -> str:
    return "Linf" if p == INF else f"L{p:g}"


def _universal_sentence(h: dict[str, float]) -> str:
    ratio = ratio_phrase(h["fooling_rate"], h["random_rate"])
    return (f"One {_pname(h['p'])} perturbation of norm {num(h['eps'])}, the same for every image, changes the "
            f"decision on {pct(h['fooling_rate'])} of {int(h['n_eval'])} held-out images ({pct(h['fit_rate'])} of "
            f"those it was fitted on), against {pct(h['random_rate'])} for random perturbations of the same norm"
            + (f" ({ratio})." if ratio != "n/a" else "."))


def _universal_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    return ratio_compare(hs, roles, "fooling_rate", "held-out fooling rate of its universal perturbation", "pct",
                         claim="a lower universal fooling rate", robust_larger=False)


def _universal_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    n = len(named)
    fig, axes = F.new_figure(w=2.6 * n, h=2.8, ncols=n)
    for i, (name, r) in enumerate(named):
        assert isinstance(r, UniversalSection)
        F.show_image(axes[0, i], r.uap.perturbation, f"{name}: fools {pct(r.heldout_fooling_rate)}", signed=True)
    figs = [Figure("The universal perturbations (rescaled, red positive) with their held-out fooling rates.",
                   F.to_data_uri(fig))]
    bars = F.bars([name for name, _ in named],
                  [("universal", [r.heldout_fooling_rate for _, r in named]),  # type: ignore[attr-defined]
                   ("random, same norm", [r.random_fooling_rate for _, r in named])],  # type: ignore[attr-defined]
                  ylabel="fooling rate", title="Universal vs random perturbation", ylim=(0, 1.02))
    figs.append(Figure("Fooling rate (eq. 17) of the universal perturbation and of random ones of the same norm.",
                       F.to_data_uri(bars)))
    return figs


UNIVERSAL: SectionSpec = SectionSpec(
    key="universal", title="Universal adversarial perturbation", paper="eq. (17), Fig. 5",
    requires=("robustlens.attacks.universal",), compute=compute_universal, headline=_universal_headline,
    sentence=_universal_sentence, compare=_universal_compare, figures=_universal_figures,
    table=(("fooling_rate", "universal perturbation fooling rate", "pct"),),
)


# ---------------------------------------------------------------------------------------------- sanity
def compute_sanity(clf: Classifier, data: ReportData, plan: ReportPlan, seed: int) -> SanityReport:
    """The gradient-masking checks (monotone success in eps, an unbounded eps fools everything, FGSM no stronger than
    PGD, Square no stronger than white-box PGD) at the Linf threat eps on ``sanity_samples`` samples (Sec. II-B)."""
    x, y = data.head(min(plan.sanity_samples, len(data.y)))
    return gradient_masking_checks(clf, x, y, norm="Linf", eps=plan.threat_linf, steps=plan.pgd_steps,
                                   square_queries=plan.sanity_queries, seed=seed)


def _sanity_headline(r: Result) -> dict[str, float]:
    assert isinstance(r, SanityReport)
    run = [c for c in r.checks if not c.skipped]
    out = {"flags": float(sum(c.flagged for c in run)), "checks": float(len(run)), "eps": r.eps, "n": float(r.n)}
    out.update({f"flag_{c.name}": float(c.flagged) for c in run})
    return out


def _sanity_sentence(h: dict[str, float]) -> str:
    names = [k[len("flag_"):].replace("_", " ") for k, v in h.items() if k.startswith("flag_") and v > 0]
    if not names:
        return (f"None of the {int(h['checks'])} gradient-masking checks fires at Linf eps = {num(h['eps'])} on "
                f"{int(h['n'])} correctly classified samples: no sign of gradient masking in these checks.")
    return (f"{len(names)} of {int(h['checks'])} gradient-masking checks fire at Linf eps = {num(h['eps'])} "
            f"({', '.join(names)}): the robust accuracies above may be overestimated.")


def _sanity_compare(hs: list[tuple[str, dict[str, float]]], roles: dict[str, str]) -> str:
    return "; ".join(f"{name} raises {int(h['flags'])} of {int(h['checks'])} flags" for name, h in hs) + "."


def _sanity_figures(named: Named, plan: ReportPlan) -> list[Figure]:
    series = []
    for name, r in named:
        assert isinstance(r, SanityReport)
        mono = r["monotone_eps"].values
        series.append((name, list(mono["eps"]), list(mono["success"])))
    fig = F.curves(series, xlabel="Linf eps", ylabel="PGD success (of correct samples)",
                   title="Attack success must grow with eps", ylim=(0, 1.02))
    rows = []
    for name, r in named:
        assert isinstance(r, SanityReport)
        for c in r.checks:
            tag = "skipped" if c.skipped else ("FLAG" if c.flagged else "ok")
            rows.append(f"{name} / {c.name}: {tag}")
    return [Figure("Success of PGD against eps (monotone check). Checks: " + "; ".join(rows) + ".",
                   F.to_data_uri(fig))]


SANITY: SectionSpec = SectionSpec(
    key="sanity", title="Gradient-masking sanity checks", paper="Sec. II-B", requires=("robustlens.attacks.sanity",),
    compute=compute_sanity, headline=_sanity_headline, sentence=_sanity_sentence, compare=_sanity_compare,
    figures=_sanity_figures, table=(("flags", "gradient-masking flags", "num"),),
)


__all__ = [
    "EXAMPLES", "ROBUSTNESS", "SANITY", "UNIVERSAL", "ExamplesResult", "NormRobustness", "RobustnessResult",
    "UniversalSection", "compute_examples", "compute_robustness", "compute_universal", "min_norm", "minimal_norms",
]
