"""Decoupled Direction and Norm (DDN; Rony et al., CVPR 2019): minimal L2 perturbations (eq. 8-9 of Ortiz-Jimenez,
Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and Improving Deep Learning
through Adversarial Robustness", Proc. IEEE 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import COUNT, NON_NEGATIVE_INT, OPEN_UNIT, POSITIVE, Pair, checked
from ..decision import Criterion
from ..norms import lp_norm
from ..ops import per_sample
from .base import ATTACKS
from .budget_loop import BudgetAttack


@ATTACKS.register("ddn", minimal=True, norms=(2.0,), steps="steps", summary="Decoupled Direction and Norm, L2")
class DDN(BudgetAttack):
    """DDN: gradient steps on the cross-entropy, with the L2 norm of the perturbation set separately.

    Each iteration takes a step of length ``alpha`` (cosine-annealed from ``alpha[0]`` to ``alpha[1]``) along the
    L2-normalised gradient of the cross-entropy, multiplies the budget ``eps`` by ``1 - gamma`` when the current
    point is adversarial and by ``1 + gamma`` otherwise, and rescales the perturbation onto the sphere of radius
    ``eps`` (Rony et al., 2019). The smallest adversarial point seen is returned. Minimal L2 perturbation of eq. (9).

    Args:
        steps: iterations (each one forward and one backward pass per sample).
        gamma: budget adaptation factor.
        init_norm: the initial budget.
        alpha: initial and final step length.
        refine: passes of the linear refinement after the iterations (see
            :func:`~robustlens.attacks.budget_loop.refine_on_linearised_boundary`); 0 returns DDN's own best point.
        clip: keep examples inside the bounds.
    """

    name = "ddn"

    @checked(steps=COUNT, gamma=OPEN_UNIT, init_norm=POSITIVE, alpha=Pair(low=0, low_open=True),
             refine=NON_NEGATIVE_INT)
    def __init__(
        self,
        *,
        steps: int = 100,
        gamma: float = 0.05,
        init_norm: float = 1.0,
        alpha: tuple[float, float] = (1.0, 0.01),
        refine: int = 1,
        clip: bool = True,
    ) -> None:
        super().__init__(2, steps=steps, gamma=gamma, alpha=alpha, gamma_final=gamma, refine=refine, clip=clip)
        self.init_norm = float(init_norm)

    def initial_budget(self, x: Tensor) -> Tensor:
        return torch.full((x.shape[0],), self.init_norm, dtype=x.dtype, device=x.device)

    def loss(self, logits: Tensor, criterion: Criterion) -> Tensor:
        if criterion.targets is not None:
            return -F.cross_entropy(logits, criterion.targets, reduction="none")
        return F.cross_entropy(logits, criterion.labels, reduction="none")

    def direction(self, grad: Tensor, delta: Tensor, eps: Tensor, loss: Tensor, alpha: float) -> Tensor:
        return alpha * grad / per_sample(lp_norm(grad, 2).clamp_min(1e-12), grad)

    def update_budget(
        self, eps: Tensor, is_adv: Tensor, norm: Tensor, best: Tensor, loss: Tensor, grad: Tensor, gamma: float
    ) -> Tensor:
        return torch.where(is_adv, eps * (1 - gamma), eps * (1 + gamma))

    def fit(self, delta: Tensor, eps: Tensor) -> Tensor:
        return delta * per_sample(eps / lp_norm(delta, 2).clamp_min(1e-12), delta)


__all__ = ["DDN"]
