"""APGD: step-size-free PGD with momentum and checkpoint halving (Croce & Hein, 2020), eq. (10)-(11) of
Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and
Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ..checks import COUNT, NON_NEGATIVE, PROBABILITY, checked
from ..classifier import Classifier
from ..decision import Criterion
from ..errors import ConfigError
from ..norms import INF
from ..ops import per_sample
from ..seeding import SampleRNG
from .base import ATTACKS, BoundedAttack
from .iterative import LoopConfig, Projector, Stepper, iterate, resolve_bounded_loss, step_direction


def checkpoints(steps: int) -> list[int]:
    """APGD's checkpoints ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (Croce & Hein, 2020, Sec. 3.2), as iterate indices."""
    first = max(int(0.22 * steps), 1)
    shrink = max(int(0.03 * steps), 1)
    least = max(int(0.06 * steps), 1)
    out, w, k = [], first, first
    while w < steps:
        out.append(w)
        k = max(k - shrink, least)
        w += k
    return out


class _APGDStep(Stepper):
    """One APGD update: a gradient step of size eta, then momentum 0.75 (eq. in Sec. 3.1 of Croce & Hein, 2020):

    ``z = P(x_k + eta * d(grad))``, ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))``.

    At each checkpoint a sample halves eta and restarts from its best point when (1) the loss increased in at most
    a fraction ``rho`` of the steps since the last checkpoint, or (2) eta was not halved at the last checkpoint and
    the best loss has not improved since then.
    """

    def __init__(self, p: float, eps: float, steps: int, rho: float, momentum: float) -> None:
        self.p, self.eps, self.rho, self.momentum = p, eps, rho, momentum
        self.checks = checkpoints(steps)

    def start(self, clean: Tensor, x0: Tensor) -> dict[str, Tensor]:
        n = clean.shape[0]
        kw: dict = {"device": clean.device, "dtype": clean.dtype}
        self._last = 0
        self._next = 0
        return {
            "eta": torch.full((n,), 2.0 * self.eps, **kw),
            "x_best": x0.clone(),
            "g_best": torch.zeros_like(x0),
            "loss_best": torch.full((n,), float("-inf"), **kw),
            "loss_prev": torch.full((n,), float("inf"), **kw),
            "increases": torch.zeros(n, **kw),
            "best_at_check": torch.full((n,), float("-inf"), **kw),
            "reduced_at_check": torch.ones(n, dtype=torch.bool, device=clean.device),
            "x_prev": x0.clone(),
        }

    def step(self, it: int, clean: Tensor, xk: Tensor, grad: Tensor, loss: Tensor,
             state: dict[str, Tensor], proj: Projector) -> Tensor:
        s = state
        better = loss > s["loss_best"]
        b = per_sample(better, xk)
        s["x_best"] = torch.where(b, xk, s["x_best"])
        s["g_best"] = torch.where(b, grad, s["g_best"])
        s["loss_best"] = torch.where(better, loss, s["loss_best"])
        if it == 0:
            s["best_at_check"] = s["loss_best"].clone()
        s["increases"] = s["increases"] + (loss > s["loss_prev"]).to(loss.dtype)
        s["loss_prev"] = loss
        if self._next < len(self.checks) and it == self.checks[self._next]:
            window = it - self._last
            oscillating = s["increases"] <= self.rho * window
            stalled = ~s["reduced_at_check"] & (s["best_at_check"] >= s["loss_best"])
            reduce = oscillating | stalled
            s["eta"] = torch.where(reduce, s["eta"] / 2, s["eta"])
            r = per_sample(reduce, xk)
            xk = torch.where(r, s["x_best"], xk)
            grad = torch.where(r, s["g_best"], grad)
            s["reduced_at_check"] = reduce
            s["best_at_check"] = s["loss_best"].clone()
            s["increases"] = torch.zeros_like(s["increases"])
            self._last = it
            self._next += 1
        a = 1.0 if it == 0 else self.momentum
        eta = per_sample(s["eta"], xk)
        z = proj(clean, xk + eta * step_direction(grad, self.p))
        x_new = proj(clean, xk + a * (z - xk) + (1 - a) * (xk - s["x_prev"]))
        s["x_prev"] = xk
        return x_new


@ATTACKS.register("apgd-dlr", minimal=False, norms=(2.0, INF), steps="steps", defaults={"loss": "dlr"},
                  summary="Auto-PGD on the DLR margin")
@ATTACKS.register("apgd-ce", aliases=("apgd",), minimal=False, norms=(2.0, INF), steps="steps",
                  defaults={"loss": "ce"}, summary="Auto-PGD on the cross-entropy")
class APGD(BoundedAttack):
    """Auto-PGD (Croce & Hein, 2020): PGD without a step size to tune, on the CE or the DLR loss.

    Solves eq. (10)-(11) with momentum 0.75 and a step size that starts at ``2 eps`` and halves at the checkpoints
    ``p_j`` (see :func:`checkpoints`) when progress stalls, restarting from the best point. ``loss="dlr"`` is the
    Difference of Logits Ratio; a targeted call uses the targeted DLR loss (APGD-T). AutoAttack runs 100 steps.

    Args:
        norm: ``"Linf"`` (default) or ``"L2"``.
        eps: radius of the ball.
        steps: iterations per restart (each one forward and one backward pass per active sample).
        restarts: independent random starts, each on the samples not fooled yet.
        loss: ``"ce"`` (APGD-CE) or ``"dlr"`` (APGD-DLR; targeted calls use the targeted DLR).
        rho: the oscillation threshold of condition (1).
        momentum: the momentum ``alpha`` (0.75 in the paper).
        random_start: start uniformly in the ball (the reference always does).
        early_stop: a sample stops costing passes at its first adversarial iterate (default; the attack's success
            is unchanged since APGD keeps any adversarial iterate it meets).
        clip: keep examples in the classifier's bounds.
        progress: show a progress bar.
    """

    name: ClassVar[str] = "apgd"

    @checked(eps=NON_NEGATIVE, steps=COUNT, restarts=COUNT, rho=PROBABILITY, momentum=PROBABILITY)
    def __init__(
        self,
        norm: float | str = INF,
        eps: float = 8 / 255,
        *,
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        momentum: float = 0.75,
        random_start: bool = True,
        early_stop: bool = True,
        clip: bool = True,
        progress: bool = False,
    ) -> None:
        super().__init__(norm, eps, clip=clip)
        if self.p not in (2.0, INF):
            raise ConfigError(f"APGD here supports Linf and L2, got L{self.p}; use PGD(norm=1) for L1")
        if loss not in ("ce", "dlr"):
            raise ConfigError(f"APGD loss must be 'ce' or 'dlr', got {loss!r}")
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.loss = loss
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.random_start = random_start
        self.early_stop = early_stop
        self.progress = progress

    def attack(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG,
               loss_targets: Tensor | None = None, key: str = "") -> Tensor:
        """Candidates for ``x`` with the loss aimed at ``loss_targets`` (default: the criterion's targets)."""
        cfg = LoopConfig(p=self.p, eps=self.eps, steps=self.steps, restarts=self.restarts,
                         random_start=self.random_start, early_stop=self.early_stop, clip=self.clip,
                         progress=self.progress, name=f"{self.name}-{self.loss}{key}")
        stepper = _APGDStep(self.p, self.eps, self.steps, self.rho, self.momentum)
        with torch.no_grad():
            return iterate(clf, x, criterion, rng, cfg, stepper, resolve_bounded_loss(self.loss),
                           loss_targets=loss_targets)

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        return self.attack(clf, x, criterion, rng)


__all__ = ["APGD", "checkpoints"]
