"""The one place where robustlens decides whether a point fools the classifier.

An adversarial example is a claim about the model; a claim read from a NaN, from a point outside the data box or
the threat model's ball, or from a decision the model does not repeat, is a silent wrong number. :func:`decide` is
the rule every attack's result goes through (the final ``Attack.__call__``, AutoAttack, the universal perturbation,
the subspace attack) and that any other analysis reporting "fooled" calls too. A candidate counts as fooled only if

1. the candidate is finite (an attack that met a NaN or Inf gradient or logit returns a NaN point: *stopped*);
2. it lies inside the classifier's bounds (when the attack promises to stay there) and, for an eps-bounded attack,
   inside the Lp ball of radius eps around its clean input (paper eq. (10)-(11); a float rounding slack is allowed);
3. the model's logits at the candidate, recomputed here, are finite and meet the criterion
   (:meth:`Criterion.is_adversarial`; for a stochastic classifier, the majority decision over draws; for a
   reduced-precision model, the float32 decision; see :meth:`Classifier.decision_logits`).

A clean input that already meets the criterion (misclassified) is a success (at distance 0 unless the candidate
fools too, which is then returned); a clean input whose
logits are not finite is *invalid*, and never a success (:func:`clean_validity` raises on it unless asked to mark).

The paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and
Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021 (Sec. II-B, eq. (8)-(12)).

Example:
    >>> crit = Criterion(labels)
    >>> d = decide(clf, x, candidates, crit, p=float("inf"), eps=8 / 255)
    >>> d.success, d.norm        # per sample
    >>> d.warn("my analysis")    # one warning per kind of rejected candidate
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .errors import ConfigError, InputError, RobustLensWarning
from .norms import INF, lp_norm
from .ops import best_other_class, finite_rows, logit_margin, per_sample

if TYPE_CHECKING:  # pragma: no cover
    from .classifier import Classifier

INVALID_CHOICES = ("raise", "mark")


@dataclass
class Criterion:
    """What counts as adversarial: misclassification (``targets is None``) or reaching ``targets``.

    A logit row with a NaN or Inf entry is never adversarial (``argmax`` of a NaN row is meaningless).
    """

    labels: Tensor
    targets: Tensor | None = None

    @property
    def targeted(self) -> bool:
        return self.targets is not None

    def is_adversarial(self, logits: Tensor) -> Tensor:
        pred = logits.argmax(1)
        hit = pred == self.targets if self.targets is not None else pred != self.labels
        return hit & finite_rows(logits)

    def margin(self, logits: Tensor) -> Tensor:
        """Per-sample margin, negative exactly when adversarial (:func:`~robustlens.ops.logit_margin`).

        Untargeted: ``z_y - max_{k != y} z_k``; targeted: ``max_{k != t} z_k - z_t``.
        """
        if self.targets is not None:
            return -logit_margin(logits, self.targets)
        return logit_margin(logits, self.labels)

    def boundary_weights(self, logits: Tensor) -> Tensor:
        """Logit combinations ``(N, 1, C)`` whose gradient is the normal of the nearest decision boundary.

        Untargeted: ``z_k - z_y`` with ``k`` the best class other than the label; targeted: ``z_t - z_k`` with ``k``
        the best class other than the target. The combination is ``-margin``: negative on the clean side, increasing
        towards the adversarial side.
        """
        eye = torch.eye(logits.shape[1], dtype=logits.dtype, device=logits.device)
        if self.targets is not None:
            t = self.targets
            return (eye[t] - eye[best_other_class(logits, t)])[:, None, :]
        y = self.labels
        return (eye[best_other_class(logits, y)] - eye[y])[:, None, :]

    def __getitem__(self, idx: Tensor | slice) -> Criterion:
        return Criterion(self.labels[idx], None if self.targets is None else self.targets[idx])


def stop(candidates: Tensor, which: Tensor) -> Tensor:
    """Mark the samples ``which`` (a boolean mask or row indices) as stopped: their candidate becomes NaN, which
    :func:`decide` reads as "the attack could not go on" (a NaN or Inf gradient or logit on its path), never as a
    success. In place; returned."""
    if which.numel():
        candidates[which] = float("nan")
    return candidates


def ball_slack(clean: Tensor, p: float, bounds: tuple[float, float]) -> float:
    """The float rounding a perturbation ``(clean + delta) - clean`` of norm eps can show in the Lp norm: one unit
    of rounding at the data's scale per coordinate, summed in the Lp norm (zero for L0)."""
    if p == 0:
        return 0.0
    scale = max(1.0, abs(bounds[0]), abs(bounds[1]))
    d = clean[0].numel() if clean.shape[0] else 1
    unit = torch.finfo(clean.dtype).eps * scale
    return unit if p == INF else unit * d ** (1.0 / p)


@dataclass
class Decision:
    """Per-sample verdicts of :func:`decide` (all tensors of shape ``(N,)`` but ``adversarial``).

    Attributes:
        success: the candidate (or, where it already is, the clean input) meets the criterion.
        adversarial: the point that justifies ``success``: the candidate where it fools, else the clean input.
        norm: Lp norm of ``adversarial - clean`` where ``success``, ``inf`` elsewhere.
        clean_adversarial: the clean input already meets the criterion (success at distance 0).
        invalid: the clean logits are not finite (never a success).
        stopped: the candidate is not finite: the attack stopped on a NaN or Inf gradient or logit.
        nonfinite_logits: the candidate is finite but the model's logits there are not.
        outside: the candidate leaves the bounds or the eps-ball (a bug in whatever produced it).
    """

    success: Tensor
    adversarial: Tensor
    norm: Tensor
    clean_adversarial: Tensor
    invalid: Tensor
    stopped: Tensor
    nonfinite_logits: Tensor
    outside: Tensor

    def warn(self, owner: str, stacklevel: int = 3) -> None:
        """One :class:`RobustLensWarning` per kind of rejected candidate, saying what it means and what to do."""
        warn_rejected(owner, self.stopped, self.nonfinite_logits, self.outside, stacklevel=stacklevel + 1)


def rejection_messages(owner: str, stopped: Tensor, nonfinite_logits: Tensor, outside: Tensor) -> list[str]:
    """The sentences :func:`warn_rejected` warns with (one per non-empty kind)."""
    n = int(stopped.numel())
    out = []
    k = int(stopped.sum())
    if k:
        out.append(
            f"{owner} stopped on {k} of {n} samples: the model's input gradient or logits were NaN or Inf on the "
            "attack's path (a non-differentiable operation such as sqrt or log at 0 in the model or its "
            "preprocessing, an overflow, or gradient masking). They count as not fooled and their robustness is "
            "unknown, so robust accuracy is refused for them: fix the model (e.g. sqrt(x + 1e-12)), drop those "
            "samples, or use a gradient-free attack such as Square"
        )
    k = int(nonfinite_logits.sum())
    if k:
        out.append(
            f"{owner}: the model returned NaN or Inf logits at {k} of {n} attacked points (not at the clean "
            "inputs); those points count as not fooled. The model is numerically unstable off the data: check "
            "for overflow or log/division by zero in forward"
        )
    k = int(outside.sum())
    if k:
        out.append(
            f"{owner} returned {k} of {n} points outside the data bounds or the eps-ball; they count as not "
            "fooled (a bug in whatever produced them: please report it)"
        )
    return out


def warn_rejected(owner: str, stopped: Tensor, nonfinite_logits: Tensor, outside: Tensor, *,
                  stacklevel: int = 3) -> None:
    """Warn once per kind of candidate that :func:`decide` rejected (per-sample masks of :class:`Decision`)."""
    for text in rejection_messages(owner, stopped, nonfinite_logits, outside):
        warnings.warn(text, RobustLensWarning, stacklevel=stacklevel)


def clean_validity(logits: Tensor, invalid: str = "raise", owner: str = "", what: str = "clean input(s)") -> Tensor:
    """Per sample, whether the clean logits are finite; with ``invalid="raise"`` a non-finite row is an
    :class:`InputError` that says what to do, with ``"mark"`` the mask is returned (False: invalid)."""
    if invalid not in INVALID_CHOICES:
        raise ConfigError(f"invalid must be 'raise' or 'mark', got {invalid!r}")
    ok = finite_rows(logits)
    if invalid == "raise" and not bool(ok.all()):
        bad = (~ok).nonzero().flatten()
        first = ", ".join(str(int(i)) for i in bad[:5]) + (", ..." if bad.numel() > 5 else "")
        where = f"{owner}: " if owner else ""
        raise InputError(
            f"{where}the model returns NaN or Inf logits for {bad.numel()} of {ok.numel()} {what} (positions "
            f"{first}): no decision can be read from them (argmax would silently call them class 0). Check the model "
            "(NaN weights, log or division by zero in forward, overflow), drop those inputs, or pass invalid='mark' to "
            "mark them invalid (never correct, never fooled) and analyse the rest"
        )
    return ok


def decide(
    clf: Classifier,
    clean: Tensor,
    candidates: Tensor,
    criterion: Criterion,
    *,
    p: float = 2.0,
    eps: float | None = None,
    bounds: bool = True,
    clean_logits: Tensor | None = None,
    batch_size: int | None = None,
) -> Decision:
    """Decide, per sample, whether ``candidates`` fool ``clf`` under ``criterion`` (see the module docstring).

    Args:
        clf: the classifier; logits are recomputed with :meth:`Classifier.decision_logits` (chunked, no gradients).
        clean: the clean inputs ``(N, *shape)``, already validated.
        candidates: one candidate per sample (NaN rows: stopped samples, see :func:`stop`).
        criterion: labels (and targets) the decision is about.
        p: the norm in which ``norm`` is measured (and the ball, with ``eps``).
        eps: the budget of an eps-bounded attack: a candidate outside the ball is not a success.
        bounds: require candidates inside ``clf.bounds`` (the attacks that clip promise it).
        clean_logits: decision logits at ``clean`` if already computed (saves one pass).
        batch_size: chunk size of the decision passes (default ``clf.batch_size``).
    """
    if candidates.shape != clean.shape:
        raise InputError(f"candidates have shape {tuple(candidates.shape)}, the clean inputs {tuple(clean.shape)}")
    if clean_logits is None:
        clean_logits = clf.decision_logits(clean, batch_size=batch_size)
    valid = finite_rows(clean_logits)
    finite = finite_rows(candidates)
    safe = torch.where(per_sample(finite, clean), candidates, clean)  # the model never sees a NaN input
    inside = torch.ones_like(finite)
    if bounds:
        lo, hi = clf.bounds
        inside &= ((safe >= lo) & (safe <= hi)).flatten(1).all(1)
    if eps is not None:
        if not math.isfinite(eps) or eps < 0:
            raise ConfigError(f"eps must be a finite number >= 0, got {eps}")
        dist = lp_norm(safe - clean, p)
        inside &= dist <= eps * (1 + 1e-6) + ball_slack(clean, p, clf.bounds)
    logits = clf.decision_logits(safe, batch_size=batch_size)
    finite_logits = finite_rows(logits)
    fooled = valid & finite & inside & criterion.is_adversarial(logits)
    clean_adv = valid & criterion.is_adversarial(clean_logits)
    success = fooled | clean_adv
    adversarial = torch.where(per_sample(fooled, clean), candidates, clean)
    norm = lp_norm(adversarial - clean, p)
    norm = torch.where(success, norm, torch.full_like(norm, INF))
    return Decision(
        success=success,
        adversarial=adversarial,
        norm=norm,
        clean_adversarial=clean_adv,
        invalid=~valid,
        stopped=valid & ~finite & ~clean_adv,
        nonfinite_logits=valid & finite & inside & ~finite_logits & ~clean_adv,
        outside=valid & finite & ~inside & ~clean_adv,
    )


__all__ = [
    "Criterion",
    "Decision",
    "ball_slack",
    "clean_validity",
    "decide",
    "rejection_messages",
    "stop",
    "warn_rejected",
]
