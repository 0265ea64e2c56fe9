"""The radius warm-up of adversarial training: a linear ramp of ``eps`` from ``eps / steps`` to ``eps`` over the first
``steps`` optimisation steps.

Adversarial training at a large radius from a random initialisation (PGD-AT at Linf eps = 0.3 on MNIST, paper
eq. (14)) can stay at chance: the inner maximisation finds points no class fits, the loss stays at ``log(C)`` and
the weights never leave the constant classifier. The usual remedy is to grow the radius over the first epoch(s)
(Madry et al. 2018 pre-train on clean data; Gowal et al. 2018 and Wong et al. 2020 ramp the radius), so that the
network first learns the task and then its robustness. An objective takes part when it has a radius ``eps`` and an
``at_radius(eps)`` method returning the same objective at another radius (its step sizes scaled with it).

Example:
    >>> warmup = EpsWarmup(steps=250)
    >>> objective, eps = warmup.objective_at(PGDAT(eps=0.3), step=0)   # eps == 0.3 / 250
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..checks import NON_NEGATIVE_INT, check
from .contracts import Objective


def has_radius(objective: Objective) -> bool:
    """Whether the warm-up applies to ``objective``: it has a radius ``eps > 0`` and an ``at_radius`` method."""
    eps = getattr(objective, "eps", None)
    return callable(getattr(objective, "at_radius", None)) and isinstance(eps, float) and eps > 0


@dataclass(frozen=True)
class EpsWarmup:
    """A linear ramp of the objective's radius over the first ``steps`` optimisation steps (0: none).

    Step ``s < steps`` trains at ``eps * (s + 1) / steps``; from step ``steps`` on at ``eps``. The factor depends on
    the global step only, so a run resumed from a checkpoint continues the same ramp.
    """

    steps: int

    def __post_init__(self) -> None:
        check(self.steps, "steps", NON_NEGATIVE_INT, "EpsWarmup")

    def factor(self, step: int) -> float:
        """The fraction of the radius used at optimisation step ``step``."""
        return 1.0 if step >= self.steps else (step + 1) / self.steps

    def objective_at(self, objective: Objective, step: int) -> tuple[Objective, float | None]:
        """The objective to use at ``step`` and its radius (``None`` when the warm-up does not apply to it)."""
        if not self.steps or not has_radius(objective):
            return objective, None
        target: Any = objective
        f = self.factor(step)
        if f >= 1.0:
            return objective, float(target.eps)
        eps = float(target.eps) * f
        return target.at_radius(eps), eps


__all__ = ["EpsWarmup", "has_radius"]
