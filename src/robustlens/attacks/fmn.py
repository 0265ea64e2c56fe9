"""Fast Minimum-Norm attack (FMN; Pintor et al., NeurIPS 2021): minimal L0, L1, L2 and Linf perturbations (eq. 8-9
of Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and Improving
Deep Learning through Adversarial Robustness", Proc. IEEE 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import COUNT, NON_NEGATIVE_INT, OPEN_UNIT, Pair, checked
from ..decision import Criterion
from ..errors import ConfigError
from ..norms import INF, dual, lp_norm, project, project_l0_ball, steepest_direction
from ..ops import per_sample
from .base import ATTACKS
from .budget_loop import BudgetAttack


@ATTACKS.register("fmn", minimal=True, norms=(0.0, 1.0, 2.0, INF), steps="steps",
                  summary="Fast Minimum-Norm, L0/L1/L2/Linf")
class FMN(BudgetAttack):
    """FMN: steps on the logit margin inside an Lp ball whose radius adapts to the boundary (paper eq. 8-9).

    Until a first adversarial point is found the radius is the linear estimate of the distance to the boundary,
    ``||delta||_p + |margin| / ||grad||_q``; afterwards it shrinks to ``min(eps (1 - gamma), best norm)`` at
    adversarial iterates and grows by ``1 + gamma`` otherwise (``gamma`` cosine-annealed). The L0 budget counts
    pixels: it starts at one and grows (``max(eps + 1, eps (1 + gamma))``) until the iterate is adversarial, and
    shrinks by at least one pixel at adversarial iterates (starting from the whole input, as before, it could not
    shrink to the few dozen pixels an MNIST digit needs within 100 steps). The step follows the
    steepest ascent of the margin (L2-normalised for L0 and L1, sign for Linf), with a length of ``alpha`` times the
    current radius, and the perturbation is projected onto the Lp ball (L0: keep the largest entries). Pintor,
    Roli, Brendel and Biggio, "Fast Minimum-norm Adversarial Attacks through Adaptive Norm Constraints", 2021.

    Args:
        norm: 0, 1, 2 or inf.
        steps: iterations (each one forward and one backward pass per sample).
        gamma: initial budget adaptation factor (annealed to ``gamma / 100``).
        alpha: initial and final relative step length.
        refine: passes of the linear refinement after the iterations (L1, L2, Linf; see
            :func:`~robustlens.attacks.budget_loop.refine_on_linearised_boundary`); 0 returns FMN's own best point.
        box_aware: when clipping, drop the gradient coordinates that cannot move (a pixel at 0 whose gradient
            points down, one at 1 whose gradient points up) from the step and from the linear estimate of the
            distance. Without it, on images with many pixels at the bounds, the estimate ``|margin| / ||grad||_q``
            counts progress that clipping then removes: before a first adversarial point is found the radius
            settles just above the clipped norm and the iterate stalls short of the boundary, and a share of the
            digits of an MNIST CNN is never fooled in L2 and L1 (BENCHMARKS.md, Attacks, "FMN"); with it,
            none.
        clip: keep examples inside the bounds.
    """

    name = "fmn"

    @checked(steps=COUNT, gamma=OPEN_UNIT, alpha=Pair(low=0, low_open=True), refine=NON_NEGATIVE_INT)
    def __init__(
        self,
        norm: float | str = 2,
        *,
        steps: int = 100,
        gamma: float = 0.05,
        alpha: tuple[float, float] = (1.0, 0.01),
        refine: int = 1,
        box_aware: bool = True,
        clip: bool = True,
    ) -> None:
        super().__init__(norm, steps=steps, gamma=gamma, alpha=alpha, refine=refine, clip=clip)
        if self.p not in (0, 1, 2, INF):
            raise ConfigError(f"FMN supports the L0, L1, L2 and Linf norms, got L{self.p}")
        self.box_aware = bool(box_aware)

    def loss(self, logits: Tensor, criterion: Criterion) -> Tensor:
        return -criterion.margin(logits)

    def _length(self, grad: Tensor, delta: Tensor, eps: Tensor, loss: Tensor) -> Tensor:
        """The step length scale, in the norm of the step direction."""
        if self.p in (2, INF):
            return eps
        gap = loss.abs() / lp_norm(grad, 2).clamp_min(1e-12)  # L2 linear estimate: L0/L1 budgets are not lengths
        return lp_norm(delta, 2) + gap

    def direction(self, grad: Tensor, delta: Tensor, eps: Tensor, loss: Tensor, alpha: float) -> Tensor:
        u = steepest_direction(grad, self.p if self.p in (2, INF) else 2)
        return u * per_sample(alpha * self._length(grad, delta, eps, loss), grad)

    def update_budget(
        self, eps: Tensor, is_adv: Tensor, norm: Tensor, best: Tensor, loss: Tensor, grad: Tensor, gamma: float
    ) -> Tensor:
        found = torch.isfinite(best)
        if self.p == 0:  # budgets count pixels: start from one and move by at least one per step
            known = torch.isfinite(eps)
            grow = torch.where(known, torch.maximum(eps + 1, eps * (1 + gamma)), torch.ones_like(eps))
            base = torch.where(known, eps, best)
            shrink = torch.minimum(torch.minimum(base - 1, base * (1 - gamma)), best).clamp_min(1)
            return torch.where(is_adv, shrink, grow).clamp(max=float(grad[0].numel()))
        lin = (norm + loss.abs() / lp_norm(grad, dual(self.p)).clamp_min(1e-12)) * (1 + gamma)
        shrink = torch.minimum(torch.where(torch.isfinite(eps), eps, best) * (1 - gamma), best)
        return torch.where(is_adv, shrink, torch.where(found, eps * (1 + gamma), lin))

    def fit(self, delta: Tensor, eps: Tensor) -> Tensor:
        if self.p == 0:
            return project_l0_ball(delta, eps)
        return project(delta, self.p, eps)


__all__ = ["FMN"]
