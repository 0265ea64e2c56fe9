"""Sanity checks against gradient masking, in the spirit of AutoAttack's checks (Croce & Hein, 2020).

An eps-bounded evaluation (eq. 10-12 of Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of
Adversity: Understanding and Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021) is only as
good as the attack's gradients. When a defence masks, shatters or obfuscates gradients, robust accuracy is
overestimated, and telltale inconsistencies appear
(Athalye, Carlini & Wagner, 2018; Carlini et al., "On Evaluating Adversarial Robustness", 2019):

- ``monotone_eps``: the success rate of the white-box attack does not grow with eps (a larger ball contains the
  smaller one, so a sound attack cannot do worse with more budget);
- ``unbounded``: with an eps that covers the whole data box, the attack does not fool (nearly) every sample;
- ``one_step_vs_iterative``: the one-step FGSM fools more samples than iterative PGD at the same eps;
- ``black_box_vs_white_box``: the gradient-free Square attack fools more samples than PGD at the same eps.

The checks run on one batch (a few hundred samples suffice); rates are fractions of the correctly classified ones,
and a comparison flags only when it is violated by more than ``tol`` of them.

Each check returns a flag and a sentence saying what it means and what to try next.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ..analyses import register_analysis
from ..checks import COUNT, POSITIVE, PROBABILITY, Number, check, checked
from ..classifier import Classifier
from ..errors import ConfigError
from ..norms import INF, norm_name, parse_norm
from ..results import Result
from .base import Attack, BoundedAttack
from .fgsm import FGSM
from .pgd import PGD
from .square import Square


@dataclass
class SanityCheck(Result):
    """One check: its name, whether it flags possible gradient masking, a sentence, and the rates it compared."""

    name: str
    flagged: bool
    message: str
    values: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False


@dataclass
class SanityReport(Result):
    """The outcome of :func:`gradient_masking_checks`.

    Attributes:
        checks: every check, in order.
        norm: the threat model's norm.
        eps: the budget checked.
        n: samples correctly classified (the rates are fractions of them).
    """

    checks: list[SanityCheck]
    norm: str
    eps: float
    n: int

    @property
    def flagged(self) -> bool:
        """Whether any check flags possible gradient masking."""
        return any(c.flagged for c in self.checks)

    def __getitem__(self, name: str) -> SanityCheck:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; checks: {[c.name for c in self.checks]}")

    def summary(self) -> str:
        lines = [f"gradient-masking checks, {self.norm} eps={self.eps:g}, {self.n} correctly classified samples:"]
        for c in self.checks:
            tag = "SKIP" if c.skipped else ("FLAG" if c.flagged else "ok")
            lines.append(f"  [{tag}] {c.name}: {c.message}")
        return "\n".join(lines)


def _unbounded_eps(clf: Classifier, x: Tensor, p: float) -> float:
    """An eps whose ball contains the whole data box around any point."""
    lo, hi = clf.bounds
    span = hi - lo
    d = x[0].numel()
    if p == INF:
        return span
    return span * d ** (1.0 / p)


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> SanityReport:
    span = clf.bounds[1] - clf.bounds[0]
    return gradient_masking_checks(clf, x, y, eps=0.05 * span, eps_factors=(1.0,), steps=2, square_queries=3,
                                   seed=seed)


@register_analysis("gradient-masking-checks", kind="attack", smoke=_smoke,
                   summary="four sanity checks against gradient masking")
@checked(eps=POSITIVE, steps=COUNT, square_queries=COUNT, tol=Number(low=0, high=1, high_open=True),
         unbounded_min=PROBABILITY)
def gradient_masking_checks(
    clf: Classifier,
    x: Tensor,
    y: Tensor | Sequence[int] | None = None,
    *,
    norm: float | str = "Linf",
    eps: float,
    eps_factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    white_box: Callable[[float], BoundedAttack] | None = None,
    steps: int = 50,
    square_queries: int = 1000,
    tol: float = 0.02,
    unbounded_min: float = 0.99,
    seed: int = 0,
    indices: Tensor | Sequence[int] | None = None,
) -> SanityReport:
    """Run the four gradient-masking checks on a batch (see the module docstring).

    Args:
        clf: the classifier.
        x, y: a batch of inputs in the data range and their labels (predictions when omitted).
        norm: the threat model's norm (``"Linf"``, ``"L2"`` or ``"L1"``; Square is skipped for L1).
        eps: the budget under evaluation.
        eps_factors: the eps grid of the monotonicity check, as multiples of ``eps``.
        white_box: a factory ``eps -> attack`` for the iterative white-box attack (default
            ``PGD(norm, eps, steps=steps)`` with a random start). With the default, the black-box check compares
            Square with the per-sample union of PGD on the cross-entropy and PGD on the DLR margin (3+ classes).
        steps: iterations of the default PGD.
        square_queries: queries of the Square attack.
        tol: the fraction of samples by which a comparison must be violated to flag (absorbs attack noise).
        unbounded_min: the success rate the attack must reach with an eps that covers the whole box.
        seed: seed of every random choice (random starts, Square's proposals).
        indices: dataset index of each sample (random draws then do not depend on batching).

    Returns:
        A :class:`SanityReport`; ``report.flagged`` is ``True`` when any check fires, ``report.summary()`` explains.
    """
    p = parse_norm(norm)
    if not eps_factors:
        raise ConfigError(f"eps_factors must be positive multiples of eps, got {list(eps_factors)}")
    eps_factors = [check(f, "eps_factors", POSITIVE, "gradient_masking_checks") for f in eps_factors]
    make = white_box or (lambda e: PGD(norm, e, steps=steps))
    correct: Tensor | None = None

    def fooled(attack: Attack) -> Tensor:
        """Per sample: correctly classified and fooled by ``attack``."""
        nonlocal correct
        res = attack(clf, x, y, seed=seed, indices=indices)
        if correct is None:
            correct = res.clean_correct
            if not bool(correct.any()):
                raise ConfigError("no sample is correctly classified: the checks need correctly classified inputs")
        return res.success & correct

    def rate(mask: Tensor) -> float:
        assert correct is not None
        return float(mask.double().sum() / correct.double().sum())

    grid = sorted(eps * f for f in eps_factors)
    masks = [fooled(make(e)) for e in grid]
    rates = [rate(mk) for mk in masks]
    pgd_mask = fooled(make(eps)) if eps not in grid else masks[grid.index(eps)]
    at_eps = rate(pgd_mask)
    assert correct is not None
    # the white-box reference of the black-box check: PGD on the cross-entropy, and (with 3 classes or more) on the
    # scale-invariant DLR margin, per sample; Square optimises a margin, so a cross-entropy attack alone is no match
    white_mask = pgd_mask
    if white_box is None and clf.num_classes >= 3:
        white_mask = white_mask | fooled(PGD(norm, eps, steps=steps, loss="dlr"))
    white = rate(white_mask)
    checks: list[SanityCheck] = []

    drops = [(grid[i], grid[i + 1], rates[i] - rates[i + 1]) for i in range(len(grid) - 1)]
    worst = max(drops, key=lambda t: t[2]) if drops else (eps, eps, 0.0)
    flag = worst[2] > tol
    checks.append(SanityCheck(
        "monotone_eps", flag,
        (f"success falls from {rates[grid.index(worst[0])]:.1%} at eps={worst[0]:g} to "
         f"{rates[grid.index(worst[1])]:.1%} at eps={worst[1]:g}: a larger ball cannot hold fewer adversarial "
         "examples, so the attack is misled (shattered or obfuscated gradients); try more steps, restarts, or a "
         "gradient-free attack") if flag else "success grows with eps",
        {"eps": grid, "success": rates},
    ))

    big = _unbounded_eps(clf, x, p)
    unb = rate(fooled(make(big)))
    flag = unb < unbounded_min
    checks.append(SanityCheck(
        "unbounded", flag,
        (f"with eps={big:g}, which covers the whole data box, the attack fools only {unb:.1%} of the samples: the "
         "gradients do not lead to the boundary (masked or zero gradients); use a gradient-free attack such as "
         "Square, or BPDA for non-differentiable layers") if flag
        else f"an eps covering the whole box fools {unb:.1%} of the samples",
        {"eps": big, "success": unb},
    ))

    one = rate(fooled(FGSM(norm, eps)))
    flag = one > at_eps + tol
    checks.append(SanityCheck(
        "one_step_vs_iterative", flag,
        (f"one-step FGSM fools {one:.1%} but iterative PGD only {at_eps:.1%}: the iterative attack is trapped by a "
         "misleading loss landscape (gradient masking); try more restarts, a larger step, or APGD") if flag
        else f"iterative ({at_eps:.1%}) at least as strong as one-step ({one:.1%})",
        {"fgsm": one, "pgd": at_eps},
    ))

    if p in (2.0, INF) and x.ndim == 4:
        sq = rate(fooled(Square(norm, eps, queries=square_queries)))
        flag = sq > white + tol
        checks.append(SanityCheck(
            "black_box_vs_white_box", flag,
            (f"the gradient-free Square attack fools {sq:.1%} but white-box PGD only {white:.1%}: the gradients "
             "are uninformative (masked, shattered or randomized); trust the black-box number and investigate")
            if flag else f"white-box ({white:.1%}) at least as strong as black-box Square ({sq:.1%})",
            {"square": sq, "pgd": white},
        ))
    else:
        checks.append(SanityCheck(
            "black_box_vs_white_box", False,
            f"skipped: Square needs image batches (N, C, H, W) and the Linf or L2 norm (got {norm_name(p)}, "
            f"input of {x.ndim - 1} dimensions)",
            skipped=True,
        ))
    return SanityReport(checks=checks, norm=norm_name(p), eps=eps, n=int(correct.sum()))


__all__ = ["SanityCheck", "SanityReport", "gradient_masking_checks"]
