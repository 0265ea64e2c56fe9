"""Gradient-masking sanity checks (paper Sec. II-D: the "false sense of robustness"): a model flagged here cannot be
judged on the claims whose numbers come from gradients."""

from __future__ import annotations

from collections.abc import Sequence

from ...attacks.sanity import SanityReport, gradient_masking_checks
from ...classifier import Classifier
from .. import figures as F
from ..claims import Gate, ModelClaim
from ..data import ReportData
from ..figures import Figure
from ..plan import ReportPlan
from ..section import Row, RunContext, Section, register_section
from ..text import Headline, count, num

FLAG_PREFIX = "flag_"


def flag_names(h: Headline) -> list[str]:
    """The checks that fire, by name, from a sanity headline."""
    return [k[len(FLAG_PREFIX):].replace("_", " ") for k, v in h.items() if k.startswith(FLAG_PREFIX) and v > 0]


def _flags(h: Headline) -> str:
    names = flag_names(h)
    return f"{count(h['flags'])} of {count(h['checks'])} checks fire" + (f" ({', '.join(names)})" if names else "")


@register_section("sanity", order=110)
class SanitySection(Section[SanityReport]):
    """The gradient-masking checks (monotone success in eps, an unbounded eps fools everything, FGSM no stronger than
    PGD, Square no stronger than white-box PGD) at the Linf threat eps on ``sanity_samples`` samples."""

    title = "Gradient-masking sanity checks"
    paper = "Sec. II-B, II-D"
    requires = ("robustlens.attacks.sanity",)
    rows = (Row("flags", "gradient-masking flags (Linf eps {threat_linf})", "count"),)
    claims = (
        ModelClaim(key="no-gradient-masking", statement="the attacks measure the model's true robustness, not the "
                   "false sense of robustness that masked gradients give",
                   paper="Sec. II-D", trusts_gradients=False, measures=(("flags", "number of checks that fire"),),
                   test=lambda h: h["flags"] == 0, measured=_flags,
                   rule="it holds when none of the gradient-masking checks fires"),
    )

    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> SanityReport:
        x, y = data.head(min(plan.sanity_samples, len(data.y)))
        return gradient_masking_checks(clf, x, y, norm="Linf", eps=plan.threat_linf, steps=plan.pgd_steps,
                                       square_queries=plan.sanity_queries, seed=ctx.seed)

    def headline(self, r: SanityReport) -> dict[str, float]:
        run = [c for c in r.checks if not c.skipped]
        out = {"flags": float(sum(c.flagged for c in run)), "checks": float(len(run)), "eps": r.eps, "n": float(r.n)}
        out.update({f"{FLAG_PREFIX}{c.name}": float(c.flagged) for c in run})
        return out

    def sentence(self, h: Headline) -> str:
        names = flag_names(h)
        if not names:
            return (f"None of the {count(h['checks'])} gradient-masking checks fires at Linf eps = {num(h['eps'])} on "
                    f"{count(h['n'])} correctly classified samples.")
        return (f"{len(names)} of {count(h['checks'])} gradient-masking checks fire at Linf eps = {num(h['eps'])} "
                f"({', '.join(names)}): the robust accuracies above may be overestimated.")

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        return "; ".join(f"{name} raises {count(h['flags'])} of {count(h['checks'])} flags" for name, h in hs) + "."

    def gates(self, h: Headline, num_classes: int) -> list[Gate]:
        names = flag_names(h)
        if not names:
            return []
        return [Gate(f"raises {len(names)} gradient-masking flag(s) ({', '.join(names)}) at Linf eps {num(h['eps'])}, "
                     "so its gradient-based numbers may overstate its robustness", gradient_only=True)]

    def figures(self, named: Sequence[tuple[str, SanityReport]], plan: ReportPlan) -> list[Figure]:
        series = []
        for name, r in named:
            mono = r["monotone_eps"].values
            series.append((name, list(mono["eps"]), list(mono["success"])))
        fig = F.curves(series, xlabel="Linf eps", ylabel="PGD success (of correct samples)",
                       title="Attack success must grow with eps", ylim=(0, 1.02))
        rows = []
        for name, r in named:
            for c in r.checks:
                tag = "skipped" if c.skipped else ("FLAG" if c.flagged else "ok")
                rows.append(f"{name} / {c.name}: {tag}")
        return [F.render(fig, "Success of PGD against eps (monotone check). Checks: " + "; ".join(rows) + ".")]


__all__ = ["FLAG_PREFIX", "SanitySection", "flag_names"]
