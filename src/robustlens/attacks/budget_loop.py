"""The loop shared by DDN and FMN: step on a loss, then shrink or grow a per-sample norm budget (minimal-norm
attacks, eq. (8)-(9) of Ortiz-Jimenez et al., "Optimism in the Face of Adversity: Understanding and Improving Deep
Learning through Adversarial Robustness", Proc. IEEE 2021).

Both attacks keep a perturbation ``delta`` and a budget ``eps`` per sample. Each iteration takes a normalised
gradient step on a loss, moves ``eps`` down when the current point is adversarial and up when it is not, and maps
``delta`` back to the budget (DDN: onto the L2 sphere of radius ``eps``; FMN: into the Lp ball). The smallest
adversarial point seen is returned. Subclasses choose the loss, the step direction, the budget rule and the
projection; the loop, the cosine schedules, the bookkeeping of the best point and the pass counting live here.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor

from ..checks import COUNT, NON_NEGATIVE_INT, OPEN_UNIT, Number, Pair, checked
from ..classifier import Classifier
from ..decision import Criterion, stop
from ..norms import INF, lp_norm, minimal_linear_step_in_box
from ..ops import finite_rows
from ..seeding import SampleRNG
from .base import MinimalNormAttack
from .minimal_loop import box_free_mask, run_active

REFINE_OVERSHOOTS = (1e-4, 1e-3, 1e-2)
"""Relative overshoots tried, in order, when a refined point lands exactly on the boundary."""


def cosine_schedule(start: float, end: float, it: int, steps: int) -> float:
    """``end + (start - end) (1 + cos(pi it / steps)) / 2``: from ``start`` at 0 to ``end`` at ``steps``."""
    return end + (start - end) * (1 + math.cos(math.pi * it / max(1, steps))) / 2


class BudgetAttack(MinimalNormAttack):
    """Base of the minimal-norm attacks that adapt a norm budget (DDN, FMN); see the module docstring.

    Subclasses implement :meth:`loss`, :meth:`direction`, :meth:`update_budget` and :meth:`fit`. With
    ``box_aware`` (and ``clip``), the gradient is zeroed on the coordinates that sit at a bound and would be pushed
    out of it (:func:`~robustlens.attacks.minimal_loop.box_free_mask`) before the subclass sees it.
    """

    @checked(steps=COUNT, gamma=OPEN_UNIT, alpha=Pair(low=0, low_open=True),
             gamma_final=Number(low=0, high=1, low_open=True, high_open=True, optional=True), refine=NON_NEGATIVE_INT)
    def __init__(
        self,
        norm: float | str,
        *,
        steps: int,
        gamma: float,
        alpha: tuple[float, float],
        gamma_final: float | None = None,
        refine: int = 1,
        box_aware: bool = False,
        clip: bool = True,
    ) -> None:
        super().__init__(norm, clip=clip)
        self.box_aware = box_aware
        self.refine = int(refine)
        self.steps = int(steps)
        self.gamma = float(gamma)
        self.gamma_final = self.gamma / 100 if gamma_final is None else float(gamma_final)
        self.alpha_init, self.alpha_final = float(alpha[0]), float(alpha[1])

    @abstractmethod
    def loss(self, logits: Tensor, criterion: Criterion) -> Tensor:
        """Per-sample loss that the step increases (larger = closer to adversarial)."""

    @abstractmethod
    def direction(self, grad: Tensor, delta: Tensor, eps: Tensor, loss: Tensor, alpha: float) -> Tensor:
        """The step added to ``delta`` from the loss gradient."""

    @abstractmethod
    def update_budget(
        self, eps: Tensor, is_adv: Tensor, norm: Tensor, best: Tensor, loss: Tensor, grad: Tensor, gamma: float
    ) -> Tensor:
        """The next budget from the current one and whether the current point is adversarial."""

    @abstractmethod
    def fit(self, delta: Tensor, eps: Tensor) -> Tensor:
        """Map ``delta`` back to the budget ``eps`` (projection)."""

    def initial_budget(self, x: Tensor) -> Tensor:
        return torch.full((x.shape[0],), INF, dtype=x.dtype, device=x.device)

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        n = x.shape[0]
        delta = torch.zeros_like(x)
        eps = self.initial_budget(x)
        best = torch.full((n,), INF, dtype=x.dtype, device=x.device)
        best_adv = x.clone()
        lo, hi = clf.bounds

        def record(idx: Tensor, xa: Tensor, logits: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
            is_adv = criterion[idx].is_adversarial(logits)
            norm = lp_norm(d, self.p)
            better = is_adv & (norm < best[idx])
            sel = idx[better]
            best[sel] = norm[better]
            best_adv[sel] = xa[better]
            return is_adv, norm

        def step(idx: Tensor, it: int) -> Tensor:
            alpha = cosine_schedule(self.alpha_init, self.alpha_final, it, self.steps)
            gamma = cosine_schedule(self.gamma, self.gamma_final, it, self.steps)
            crit = criterion[idx]
            d = delta[idx]
            xa = x[idx] + d
            loss, logits, grad = clf.value_and_grad(xa, lambda z: self.loss(z, crit))
            is_adv, norm = record(idx, xa, logits, d)
            broken = ~(finite_rows(grad) & finite_rows(logits))
            if bool(broken.any()):  # a NaN or Inf gradient or logit: stop, keeping an adversarial point found before
                lost = idx[broken & ~torch.isfinite(best[idx])]
                stop(best_adv, lost)
                broken_rows = broken
            else:
                broken_rows = None
            if self.clip and self.box_aware:
                grad = grad * box_free_mask(xa, grad, clf.bounds)
            e = self.update_budget(eps[idx], is_adv, norm, best[idx], loss, grad, gamma)
            d = self.fit(d + self.direction(grad, d, e, loss, alpha), e)
            if self.clip:
                d = (x[idx] + d).clamp(lo, hi) - x[idx]
            delta[idx] = d
            eps[idx] = e
            done = best[idx] <= 0  # clean input already adversarial: nothing smaller exists
            return done if broken_rows is None else done | broken_rows

        done = run_active(n, self.steps, step, x.device)
        idx = (~done).nonzero().flatten()
        if idx.numel():  # the last iterate has not been evaluated yet
            with torch.no_grad():
                xa = x[idx] + delta[idx]
                record(idx, xa, clf.forward(xa), delta[idx])
        if self.p in (1.0, 2.0, INF):
            for _ in range(self.refine):
                refine_on_linearised_boundary(clf, x, criterion, best_adv, best, self.p, self.clip)
        return best_adv


def refine_on_linearised_boundary(
    clf: Classifier, x: Tensor, criterion: Criterion, best_adv: Tensor, best: Tensor, p: float, clip: bool
) -> None:
    """Replace each best adversarial point by the minimal-Lp point of its linearised boundary, where smaller.

    At ``x_b = x + d_b`` the boundary's normal ``w`` is the gradient of the logit difference ``f`` that decides it
    (nearest class minus label; target minus best other class). Under the linear model
    ``f(x + r) = f(x_b) + <w, r - d_b>``, the smallest ``r`` that reaches ``f = 0`` within the data box is one exact
    linear program (``norms.minimal_linear_step_in_box``). Gradient iterations approach the sparse (L1) or flat
    (Linf) optimum only slowly, and this step lands on it at once where the boundary is flat; the candidate
    ``x + (1 + o) r`` is kept only if it is adversarial and smaller than ``best`` (for the smallest overshoot ``o``
    of :data:`REFINE_OVERSHOOTS` that works). Costs one forward and one backward pass per refined sample and one
    forward pass per overshoot tried. Updates ``best_adv`` and ``best`` in place.
    """
    idx = (torch.isfinite(best) & (best > 0)).nonzero().flatten()
    if idx.numel() == 0:
        return
    crit = criterion[idx]
    xs, xb = x[idx], best_adv[idx]
    _, f, g = clf.logit_jacobian(xb, crit.boundary_weights)
    ok = finite_rows(g) & finite_rows(f)  # a point with a NaN or Inf normal keeps its best point
    if not bool(ok.all()):
        idx, crit, xs, xb, f, g = idx[ok], crit[ok], xs[ok], xb[ok], f[ok], g[ok]
        if idx.numel() == 0:
            return
    w = g[:, 0]
    c = (w * (xb - xs)).flatten(1).sum(1) - f[:, 0]
    lo, hi = clf.bounds
    if clip:
        low, high = lo - xs, hi - xs
    else:
        low, high = torch.full_like(xs, -1e12), torch.full_like(xs, 1e12)
    r = minimal_linear_step_in_box(w, c, p, low, high)
    pending = torch.ones(idx.numel(), dtype=torch.bool, device=x.device)
    for o in REFINE_OVERSHOOTS:
        sel = pending.nonzero().flatten()
        if sel.numel() == 0:
            break
        cand = xs[sel] + (1 + o) * r[sel]
        if clip:
            cand = clf.clip(cand)
        with torch.no_grad():
            adv = crit[sel].is_adversarial(clf.forward(cand))
        norm = lp_norm(cand - xs[sel], p)
        better = adv & (norm < best[idx[sel]])
        rows = idx[sel[better]]
        best[rows] = norm[better]
        best_adv[rows] = cand[better]
        pending[sel[adv]] = False


__all__ = ["BudgetAttack", "cosine_schedule"]
