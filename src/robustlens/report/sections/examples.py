"""Minimal adversarial examples of a few images in L1, L2 and Linf, with their norms and sparsity (paper Fig. 1)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...attacks.fmn import FMN
from ...attacks.norms import INF
from ...classifier import Classifier
from ...results import Result
from .. import figures as F
from ..claims import ModelClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import RunContext, Section, register_section
from ..text import Headline, compare_all, count, finite, finite_median, num

EXAMPLE_NORMS: tuple[tuple[str, float], ...] = (("L1", 1.0), ("L2", 2.0), ("Linf", INF))
CHANGED = 1e-3  # an input value counts as changed when the perturbation moves it by more than this


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


def _sparsity(h: Headline) -> str:
    return (f"the L1 perturbation changes a median of {num(h['pixels_l1'])} of {count(h['dim'])} input values, the "
            f"Linf one {num(h['pixels_linf'])}")


@register_section("examples", order=30)
class ExamplesSection(Section[ExamplesResult]):
    """FMN's minimal L1, L2 and Linf perturbations (eq. 8-9) of the first ``n_examples`` correctly classified images
    (the three kinds of perturbation of the paper's Fig. 1)."""

    title = "Adversarial examples in L1, L2 and Linf"
    paper = "eq. (8)-(9), Fig. 1"
    requires = ("robustlens.attacks.fmn",)
    claims = (
        ModelClaim(key="sparse-l1", statement="minimal L1 perturbations are sparse, unlike L2 and Linf ones",
                   paper="Fig. 1", measures=(("pixels_l1", "number of input values the L1 perturbation changes"),
                                             ("pixels_linf", "number of input values the Linf perturbation changes")),
                   test=lambda h: h["pixels_l1"] < h["pixels_linf"], measured=_sparsity,
                   rule="it holds when the L1 perturbation changes fewer input values than the Linf one (medians over "
                        "the images)"),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> ExamplesResult:
        x, y = data.correct_head(clf, plan.n_examples, purpose="no example to perturb")
        adv, norms, preds, changed = {}, {}, {}, {}
        for name, p in EXAMPLE_NORMS:
            res = FMN(norm=p, steps=2 * plan.fmn_steps)(clf, x, y, seed=ctx.seed)
            adv[name] = res.adversarial.cpu()
            norms[name] = res.norm.double().cpu()
            preds[name] = clf.predict(res.adversarial).cpu()
            changed[name] = ((res.adversarial - x).abs().flatten(1) > CHANGED).sum(1).cpu()
        return ExamplesResult(clean=x.cpu(), labels=y.cpu(), adversarial=adv, norms=norms, predictions=preds,
                              changed_pixels=changed)

    def headline(self, r: ExamplesResult) -> dict[str, float]:
        out: dict[str, float] = {"k": float(r.labels.numel()), "dim": float(r.clean[0].numel())}
        for name, _ in EXAMPLE_NORMS:
            key = name.lower()
            out[f"median_{key}"] = finite_median(r.norms[name])
            ok = torch.isfinite(r.norms[name])
            out[f"pixels_{key}"] = float(r.changed_pixels[name][ok].double().median()) if bool(ok.any()) else float(
                "nan")
        return out

    def sentence(self, h: Headline) -> str:
        def found(v: float) -> str:
            return num(v) if finite(v) else "(none found)"

        return (f"For {count(h['k'])} correctly classified image(s) FMN's smallest perturbations have median norms "
                f"L1 {found(h['median_l1'])}, L2 {found(h['median_l2'])} and Linf {found(h['median_linf'])}; the L1 "
                f"perturbation changes a median of {found(h['pixels_l1'])} of {count(h['dim'])} input values, the "
                f"Linf one {found(h['pixels_linf'])}.")

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        return compare_all(hs, "median_l2", "median L2 norm of the shown examples")

    def figures(self, named: Sequence[tuple[str, ExamplesResult]], plan: ReportPlan) -> list[Figure]:
        figs = []
        for name, r in named:
            k = r.labels.numel()
            fig, axes = F.new_figure(w=1.45 * 7, h=1.6 * k, ncols=7, nrows=k)
            for i in range(k):
                F.show_image(axes[i, 0], r.clean[i], f"clean: {int(r.labels[i])}")
                for j, (nm, _) in enumerate(EXAMPLE_NORMS):
                    pred = int(r.predictions[nm][i])
                    F.show_image(axes[i, 1 + 2 * j], r.adversarial[nm][i],
                                 f"{nm} {num(float(r.norms[nm][i]))} -> {pred}")
                    F.show_image(axes[i, 2 + 2 * j], r.adversarial[nm][i] - r.clean[i],
                                 f"{nm}: {int(r.changed_pixels[nm][i])} values", signed=True)
            figs.append(F.render(fig, f"{name}: clean images, their minimal L1, L2 and Linf adversarial examples (FMN) "
                                 "with the norm and the new class, and the perturbations (rescaled, red positive) "
                                 "with the number of input values each changes."))
        return figs


__all__ = ["CHANGED", "EXAMPLE_NORMS", "ExamplesResult", "ExamplesSection"]
