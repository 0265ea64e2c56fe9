"""Robust accuracy against eps (paper eq. 12) and the distribution of distances to the boundary (eq. 13), in L2 and
Linf, from the per-sample minimal norms of DeepFool and FMN, checked by PGD at the threat eps (eq. 10-11)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ...attacks.norms import INF
from ...attacks.pgd import PGD
from ...classifier import Classifier
from ...metrics import RobustAccuracyCurve, robust_accuracy_curve
from ...results import Result
from ...runner import run_evaluation
from .. import figures as F
from ..choices import boundary_distance
from ..claims import PairClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, finite_median, nonfinite_fraction, num, pct, versus


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

    def curve(self, clean_correct: Tensor) -> RobustAccuracyCurve:
        """The robust-accuracy curve (eq. 12) as the library's result type (for its ``plot``)."""
        return robust_accuracy_curve(self.distance, torch.isfinite(self.distance), clean_correct, self.eps, p=self.p,
                                     attack="DeepFool + FMN")


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


def bounded_success(clf: Classifier, x: Tensor, y: Tensor, attack: PGD, plan: ReportPlan, ctx: RunContext) -> Tensor:
    """Per sample, whether the eps-bounded ``attack`` fools it (in batches of ``plan.batch_size``, random draws
    keyed by the sample's position)."""

    def fn(bx: Tensor, by: Tensor | None, bi: Tensor) -> dict[str, Tensor]:
        return {"success": attack(clf, bx, by, seed=ctx.seed, indices=bi).success}

    ev = run_evaluation(fn, (x, y), batch_size=plan.batch_size, seed=ctx.seed, model=clf, progress=ctx.progress,
                        desc=f"{attack.name} eps={attack.eps:g}")
    return ev.outputs["success"].bool().cpu()


@register_section("robustness", order=20)
class RobustnessSection(Section[RobustnessResult]):
    """Minimal perturbations by DeepFool (eq. 9) and FMN, per sample the smaller of the two, give the distance to the
    boundary (eq. 8, 13) and robust accuracy at every eps of the grid (eq. 12); PGD at the threat eps (eq. 10-11)
    checks the curve where it is quoted."""

    title = "Robust accuracy and distance to the boundary"
    paper = "eq. (12)-(13)"
    requires = ("robustlens.attacks.deepfool", "robustlens.attacks.fmn", "robustlens.attacks.pgd")
    rows = (Row("median_l2", "median L2 distance to the boundary"),
            Row("median_linf", "median Linf distance to the boundary"),
            Row("robust_l2", "robust accuracy at L2 eps {threat_l2}", "pct"),
            Row("robust_linf", "robust accuracy at Linf eps {threat_linf}", "pct"))
    claims = (
        PairClaim(key="larger-margins", statement="adversarially trained networks have decision boundaries farther "
                  "from the data", paper="Sec. II-D", measure="median_l2", label="median L2 distance to the boundary",
                  robust_larger=True),
        PairClaim(key="higher-robust-accuracy", statement="adversarial training raises the worst-case accuracy under "
                  "the threat model", paper="eq. (12), Sec. II-B", measure="robust_linf",
                  label="robust accuracy at the Linf threat eps", robust_larger=True, kind="pct"),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> RobustnessResult:
        x, y = data.head(plan.samples(len(data.y)))
        correct = (clf.predict(x) == y.to(clf.device)).cpu()
        out = RobustnessResult(n=int(y.numel()), clean_correct=correct)
        for name, p, grid, threat in (("L2", 2.0, plan.eps_l2, plan.threat_l2),
                                      ("Linf", INF, plan.eps_linf, plan.threat_linf)):
            (df, fm), dist = boundary_distance(clf, x, y, p, plan, seed=ctx.seed, progress=ctx.progress)
            dist = torch.where(correct, dist, torch.zeros_like(dist))
            pgd = bounded_success(clf, x, y, PGD(norm=p, eps=threat, steps=plan.pgd_steps), plan, ctx)
            curve = robust_accuracy_curve(dist, torch.isfinite(dist), correct, grid, p=p)
            at_threat = correct & (dist > threat + 1e-12) & ~pgd
            out.norms[name] = NormRobustness(
                p=p, eps=list(grid), robust_accuracy=curve.robust_accuracy, distance=dist,
                deepfool=df.norm.double().cpu(), fmn=fm.norm.double().cpu(), threat_eps=float(threat),
                pgd_success=pgd, robust_at_threat=float(at_threat.double().mean()),
            )
        return out

    def headline(self, r: RobustnessResult) -> dict[str, float]:
        out: dict[str, float] = {"clean_accuracy": float(r.clean_correct.double().mean())}
        for name, nr in r.norms.items():
            d = nr.distance[r.clean_correct]
            key = name.lower()
            out[f"median_{key}"] = finite_median(d)
            fin = d[torch.isfinite(d)]
            out[f"mean_{key}"] = float(fin.mean()) if fin.numel() else float("nan")  # eq. (13) over correct samples
            out[f"robust_{key}"] = nr.robust_at_threat
            out[f"threat_{key}"] = nr.threat_eps
            out[f"failed_{key}"] = nonfinite_fraction(d)
        return out

    def sentence(self, h: Headline) -> str:
        s = (f"Over the correctly classified samples the median distance to the boundary is {num(h['median_l2'])} in "
             f"L2 and {num(h['median_linf'])} in Linf (eq. 13 mean L2 distance {num(h['mean_l2'])}); robust accuracy "
             f"is {pct(h['robust_l2'])} at L2 eps = {num(h['threat_l2'])} and {pct(h['robust_linf'])} at Linf eps = "
             f"{num(h['threat_linf'])}.")
        failed = max(h.get("failed_l2", 0.0), h.get("failed_linf", 0.0))
        if failed > 0:
            s += (f" No attack crossed the boundary for {pct(failed)} of the samples (their distance counts as "
                  "infinite).")
        return s

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        (ref, h0), others = hs[0], hs[1:]
        parts = []
        for name, h in others:
            at = f"robust accuracy at Linf eps = {num(h['threat_linf'])}"
            parts.append(f"{versus(name, h, ref, h0, 'median_l2', 'median L2 distance to the boundary')}, "
                         f"{versus(name, h, ref, h0, 'median_linf', 'median Linf distance')}, and "
                         f"{versus(name, h, ref, h0, 'robust_linf', at, 'pct')}")
        return "; ".join(parts) + "."

    def figures(self, named: Sequence[tuple[str, RobustnessResult]], plan: ReportPlan) -> list[Figure]:
        figs = []
        for norm in ("L2", "Linf"):
            fig, axes = F.new_figure()
            for name, r in named:
                r.norms[norm].curve(r.clean_correct).plot(axes[0, 0], label=name)
            axes[0, 0].set_title(f"Robust accuracy vs {norm} eps")
            figs.append(F.render(fig, f"Robust accuracy (eq. 12) against {norm} perturbations of norm <= eps, from "
                                 "the per-sample minimal norms of DeepFool and FMN."))
            hist = []
            for name, r in named:
                d = r.norms[norm].distance[r.clean_correct]
                hist.append((name, d[torch.isfinite(d)].tolist()))
            fig = F.histograms(hist, xlabel=f"{norm} distance to the boundary", title=f"{norm} distances (eq. 13)")
            figs.append(F.render(fig, f"Distribution of the {norm} distance to the decision boundary of the correctly "
                                 "classified samples (dashed: medians)."))
        return figs


__all__ = ["NormRobustness", "RobustnessResult", "RobustnessSection", "bounded_success"]
