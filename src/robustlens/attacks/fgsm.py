"""FGSM: one signed-gradient step to the edge of the eps-ball (Goodfellow et al., 2015), eq. (10)-(11) of
Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and
Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from ..checks import NON_NEGATIVE, Number, check, checked
from ..classifier import Classifier
from ..decision import Criterion
from ..norms import INF, steepest_direction
from ..seeding import SampleRNG
from .base import ATTACKS, BoundedAttack
from .iterative import LoopConfig, Projector, Stepper, ce_loss, iterate, make_projector


def _signed_step(p: float, eps: float, clean: Tensor, xk: Tensor, grad: Tensor, proj: Projector) -> Tensor:
    """One step of length ``eps`` along the steepest direction of ``grad``, projected onto the ball around ``clean``."""
    return proj(clean, xk + eps * steepest_direction(grad, p))


class _OneStep(Stepper):
    def __init__(self, p: float, eps: float) -> None:
        self.p, self.eps = p, eps

    def step(self, it: int, clean: Tensor, xk: Tensor, grad: Tensor, loss: Tensor,
             state: dict[str, Tensor], proj: Projector) -> Tensor:
        return _signed_step(self.p, self.eps, clean, xk, grad, proj)


@ATTACKS.register("fgsm", minimal=False, norms=(1.0, 2.0, INF), steps=None, summary="one gradient step")
class FGSM(BoundedAttack):
    """Fast Gradient (Sign) Method: ``x + eps * sign(grad_x L(x, y))`` (Goodfellow et al., 2015).

    Maximises the linearised loss of eq. (10) over the ball of eq. (11) in one step: the sign of the gradient for
    Linf, the normalised gradient for L2 (Fast Gradient Method), the largest gradient coordinate for L1
    (``norms.steepest_direction``). Targeted attacks descend the cross-entropy of the target. Costs one forward and
    one backward pass per sample (plus the clean and final checks of the attack core).

    Args:
        norm: ``"Linf"`` (default), ``"L2"`` or ``"L1"``.
        eps: radius of the ball.
        random_start: start from a random point in the ball (R+FGSM-like) instead of the clean input.
        clip: keep examples in the classifier's bounds.
    """

    name: ClassVar[str] = "fgsm"

    @checked(eps=NON_NEGATIVE)
    def __init__(self, norm: float | str = INF, eps: float = 8 / 255, *, random_start: bool = False,
                 clip: bool = True) -> None:
        super().__init__(norm, eps, clip=clip)
        self.random_start = random_start

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        cfg = LoopConfig(p=self.p, eps=self.eps, steps=1, random_start=self.random_start, clip=self.clip,
                         name=self.name)
        return iterate(clf, x, criterion, rng, cfg, _OneStep(self.p, self.eps), ce_loss)

    def from_gradient(self, clf: Classifier, x: Tensor, grad: Tensor, *, start: Tensor | None = None,
                      alpha: float | None = None) -> Tensor:
        """The FGSM example of ``x`` from an input gradient already computed, without spending :meth:`run`'s forward
        and backward pass: a step of ``alpha`` (default ``eps``) from ``start`` (default ``x``, where ``grad`` is then
        the gradient at ``x``, as :meth:`run` computes it), projected onto the ball around ``x`` and the bounds.

        GradAlign takes the gradients its regulariser needs once and steps from one of them: the clean gradient
        (zero start), or the gradient at its uniform point (random start, Wong et al.'s FGSM-RS step).
        """
        x = x.detach()
        alpha = check(alpha, "alpha", Number(low=0, low_open=True, optional=True), "FGSM.from_gradient")
        if self.eps == 0 or x.shape[0] == 0:
            return x.clone()
        proj = make_projector(clf, self.p, self.eps, self.clip)  # the ball around x, then the bounds
        xk = x if start is None else start.detach()
        return _signed_step(self.p, self.eps if alpha is None else float(alpha), x, xk, grad.detach(), proj)


__all__ = ["FGSM"]
