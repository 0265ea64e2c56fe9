"""PGD: projected gradient ascent on the loss inside the eps-ball (Madry et al., 2018), eq. (10)-(11) of
Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and
Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..checks import COUNT, NON_NEGATIVE, Number, checked
from ..classifier import Classifier
from ..decision import Criterion
from ..errors import ConfigError
from ..norms import INF, sparse_l1_direction, steepest_direction
from ..seeding import SampleRNG
from .base import ATTACKS, BoundedAttack
from .iterative import LoopConfig, LossFn, Projector, Stepper, iterate, resolve_bounded_loss


class _PGDStep(Stepper):
    """``x <- Proj(x + alpha * d(grad))`` with d the steepest (Linf, L2) or sparse (L1, SLIDE) direction."""

    def __init__(self, p: float, alpha: float, sparsity: float, bounds: tuple[float, float] | None) -> None:
        self.p, self.alpha, self.sparsity, self.bounds = p, alpha, sparsity, bounds

    def step(self, it: int, clean: Tensor, xk: Tensor, grad: Tensor, loss: Tensor,
             state: dict[str, Tensor], proj: Projector) -> Tensor:
        if self.p == 1:
            blocked = None
            if self.bounds is not None:  # a pixel at a bound cannot move further out: spend the budget elsewhere
                lo, hi = self.bounds
                blocked = ((xk >= hi) & (grad > 0)) | ((xk <= lo) & (grad < 0))
            d = sparse_l1_direction(grad, self.sparsity, blocked)
        else:
            d = steepest_direction(grad, self.p)
        return proj(clean, xk + self.alpha * d)


@ATTACKS.register("pgd", minimal=False, norms=(1.0, 2.0, INF), steps="steps",
                  summary="projected gradient descent with a random start")
class PGD(BoundedAttack):
    """Projected Gradient Descent on the loss (Madry et al., 2018), in Linf, L2 or L1.

    Iterates ``x <- Proj_{B_p(x0, eps) and bounds}(x + alpha * d)``, the eq. (10)-(11) problem solved by projected
    steepest ascent: ``d = sign(grad)`` for Linf, ``grad / ||grad||_2`` for L2. For L1 the steepest direction moves
    a single coordinate, so we take SLIDE's sparse step (Tramer & Boneh, 2019): the sign of the gradient on its
    top ``1 - l1_sparsity`` fraction of coordinates, skipping pixels that sit at a bound and would leave it, then
    project onto the L1 ball (Duchi et al., 2008).

    Args:
        norm: ``"Linf"`` (default), ``"L2"`` or ``"L1"``.
        eps: radius of the ball.
        steps: gradient steps per restart.
        alpha: step size; default ``2.5 * eps / steps`` (Madry et al.'s rule of thumb).
        random_start: start each restart uniformly in the ball (always true for restarts after the first).
        restarts: independent runs, each on the samples not fooled yet.
        loss: ``"ce"`` (default), ``"dlr"`` or a callable ``(logits, labels, targets) -> per-sample loss``.
        l1_sparsity: for L1, the fraction of gradient coordinates left out of each step.
        early_stop: a sample stops costing passes at its first adversarial iterate (default). With ``False`` every
            sample runs all steps and the adversarial iterate of highest loss is returned.
        clip: keep examples in the classifier's bounds.
        progress: show a progress bar.
    """

    name: ClassVar[str] = "pgd"

    @checked(eps=NON_NEGATIVE, steps=COUNT, alpha=Number(low=0, low_open=True, optional=True), restarts=COUNT,
             l1_sparsity=Number(low=0, high=1, high_open=True))
    def __init__(
        self,
        norm: float | str = INF,
        eps: float = 8 / 255,
        *,
        steps: int = 10,
        alpha: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        loss: str | LossFn = "ce",
        l1_sparsity: float = 0.99,
        early_stop: bool = True,
        clip: bool = True,
        progress: bool = False,
    ) -> None:
        super().__init__(norm, eps, clip=clip)
        if self.p not in (1.0, 2.0, INF):
            raise ConfigError(f"PGD supports L1, L2 and Linf, got L{self.p}")
        self.steps = int(steps)
        self.alpha = float(alpha) if alpha is not None else 2.5 * self.eps / max(1, self.steps)
        self.random_start = random_start
        self.restarts = int(restarts)
        self.loss = loss if isinstance(loss, str) else getattr(loss, "__name__", "custom")
        self._loss = resolve_bounded_loss(loss)
        self.l1_sparsity = float(l1_sparsity)
        self.early_stop = early_stop
        self.progress = progress

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        cfg = LoopConfig(p=self.p, eps=self.eps, steps=self.steps, restarts=self.restarts,
                         random_start=self.random_start or self.restarts > 1, early_stop=self.early_stop,
                         clip=self.clip, progress=self.progress, name=self.name)
        stepper = _PGDStep(self.p, self.alpha, self.l1_sparsity, clf.bounds if self.clip else None)
        with torch.no_grad():
            return iterate(clf, x, criterion, rng, cfg, stepper, self._loss)


__all__ = ["PGD"]
