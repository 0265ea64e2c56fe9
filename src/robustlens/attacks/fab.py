"""FAB: the Fast Adaptive Boundary attack, minimal-norm (Croce & Hein, 2020), eq. (8)-(9) of
Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and
Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checks import COUNT, Number, checked
from ..classifier import Classifier
from ..decision import Criterion, stop
from ..errors import ConfigError
from ..norms import INF, dual, lp_norm, minimal_linear_step_in_box, random_in_ball
from ..ops import finite_rows, per_sample
from ..seeding import SampleRNG
from .base import ATTACKS, MinimalNormAttack


@ATTACKS.register("fab", minimal=True, norms=(1.0, 2.0, INF), steps="steps", summary="Fast Adaptive Boundary")
class FAB(MinimalNormAttack):
    """Fast Adaptive Boundary attack (Croce & Hein, ICML 2020), in Linf, L2 or L1, untargeted or targeted.

    Solves eq. (9) approximately. At the iterate ``x_k`` the boundary with the chosen class ``s`` is linearised
    (``s`` = the target, or the class whose linearised boundary is nearest in the dual norm, as in DeepFool);
    both ``x_k`` and the original ``x_0`` are projected onto that hyperplane within the data box
    (``norms.minimal_linear_step_in_box``, exact), and the next iterate is the convex combination
    ``(1 - a)(x_k + eta d_k) + a (x_0 + eta d_0)`` with ``a = min(|d_k| / (|d_k| + |d_0|), alpha_max)``: the bias
    towards ``x_0`` keeps the perturbation small. When the iterate is adversarial it is recorded if smaller than
    the best so far and pulled back, ``x_0 + beta (x_k - x_0)``. Restarts after the first start from a random
    point at half the best norm found (or ``eps``).

    Costs per iteration and sample: targeted, two forward and one backward pass; untargeted, one forward and
    backward pass per class plus one forward pass.

    Args:
        norm: ``"Linf"`` (default), ``"L2"`` or ``"L1"``.
        steps: iterations per restart (100 in AutoAttack).
        restarts: runs from random starts after the first.
        eps: optional budget: a sample stops as soon as an adversarial example with norm <= eps is found (AutoAttack
            uses this); also the radius of random starts.
        alpha_max, eta, beta: the bias cap, the overshoot and the backward step (0.1, 1.05, 0.9 in the paper).
        clip: keep examples in the classifier's bounds.
        progress: show a progress bar.
    """

    name: ClassVar[str] = "fab"

    @checked(steps=COUNT, restarts=COUNT, eps=Number(low=0, optional=True), alpha_max=Number(low=0, high=1),
             eta=Number(low=0, low_open=True), beta=Number(low=0, high=1, low_open=True))
    def __init__(
        self,
        norm: float | str = INF,
        *,
        steps: int = 100,
        restarts: int = 1,
        eps: float | None = None,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        clip: bool = True,
        progress: bool = False,
    ) -> None:
        super().__init__(norm, clip=clip)
        if self.p not in (1.0, 2.0, INF):
            raise ConfigError(f"FAB supports L1, L2 and Linf, got L{self.p}")
        self.steps = int(steps)
        self.restarts = int(restarts)
        self.eps = None if eps is None else float(eps)
        self.alpha_max = float(alpha_max)
        self.eta = float(eta)
        self.beta = float(beta)
        self.progress = progress

    def _boundary(self, clf: Classifier, xk: Tensor, labels: Tensor, towards: Tensor | None) -> tuple[Tensor, Tensor]:
        """Value ``f = z_s - z_y`` and gradient of the linearised boundary with the chosen class ``s``."""
        if towards is not None:
            def fn(z: Tensor, t: Tensor = towards, y: Tensor = labels) -> Tensor:
                return z.gather(1, t[:, None]).squeeze(1) - z.gather(1, y[:, None]).squeeze(1)

            f, _, g = clf.value_and_grad(xk, fn)
            return f, g
        q = dual(self.p)
        best_d = torch.full((xk.shape[0],), float("inf"), device=xk.device, dtype=xk.dtype)
        best_f = torch.zeros_like(best_d)
        best_g = torch.zeros_like(xk)
        broken = torch.zeros(xk.shape[0], dtype=torch.bool, device=xk.device)
        for k in range(clf.num_classes):
            def fn_k(z: Tensor, k: int = k, y: Tensor = labels) -> Tensor:
                return z[:, k] - z.gather(1, y[:, None]).squeeze(1)

            f, _, g = clf.value_and_grad(xk, fn_k)
            broken |= (labels != k) & ~(finite_rows(g) & torch.isfinite(f))
            dist = f.abs() / lp_norm(g, q).clamp_min(1e-12)
            dist = torch.where(labels == k, torch.full_like(dist, float("inf")), dist)
            better = dist < best_d
            best_d = torch.where(better, dist, best_d)
            best_f = torch.where(better, f, best_f)
            best_g = torch.where(per_sample(better, xk), g, best_g)
        if bool(broken.any()):  # one class's gradient is NaN or Inf: the nearest boundary is unknown
            best_g[broken] = float("nan")
        return best_f, best_g

    def attack(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG,
               towards: Tensor | None = None, key: str = "") -> Tensor:
        """Candidates for ``x``; the boundary followed is the one with ``towards`` (default: the targets)."""
        if towards is None:
            towards = criterion.targets
        n = x.shape[0]
        lo, hi = clf.bounds if self.clip else (float("-inf"), float("inf"))
        out = x.clone()
        best = torch.full((n,), float("inf"), device=x.device, dtype=x.dtype)
        stopped = torch.zeros(n, dtype=torch.bool, device=x.device)
        bar = tqdm(total=self.steps * self.restarts, desc=f"{self.name}{key}", disable=not self.progress, leave=False)
        with torch.no_grad():
            for r in range(self.restarts):
                act = torch.arange(n, device=x.device)[~stopped]
                if self.eps is not None:
                    act = act[~(best[act] <= self.eps)]
                x0 = x[act]
                labels = criterion.labels[act]
                crit = criterion[act]
                tw = None if towards is None else towards[act]
                if r == 0:
                    xk = x0.clone()
                else:
                    radius = torch.minimum(best[act], torch.full_like(best[act], self.eps or float("inf")))
                    radius = torch.where(torch.isfinite(radius), radius, torch.ones_like(radius)) / 2
                    xk = (x0 + random_in_ball(x0, self.p, radius, rng.subset(act), key=("fab", key, r))).clamp(lo, hi)
                bk = best[act]
                for _ in range(self.steps):
                    if act.numel() == 0:
                        break
                    f, g = self._boundary(clf, xk, labels, tw)
                    broken = ~(finite_rows(g) & finite_rows(f))
                    if bool(broken.any()):  # a NaN or Inf gradient: stop, keeping an adversarial point found before
                        stop(out, act[broken & ~torch.isfinite(bk)])
                        stopped[act[broken]] = True
                        keep = ~broken
                        act, x0, xk, labels, bk = act[keep], x0[keep], xk[keep], labels[keep], bk[keep]
                        f, g, crit = f[keep], g[keep], crit[keep]
                        tw = None if tw is None else tw[keep]
                        if act.numel() == 0:
                            break
                    # project x_k and x_0 onto the linearised boundary f + <g, z - x_k> = 0, inside the box
                    f0 = f + (g * (x0 - xk)).flatten(1).sum(1)
                    d1 = minimal_linear_step_in_box(g, -f, self.p, lo - xk, hi - xk)
                    d2 = minimal_linear_step_in_box(g, -f0, self.p, lo - x0, hi - x0)
                    a1 = lp_norm(d1, self.p).clamp_min(1e-8)
                    a2 = lp_norm(d2, self.p).clamp_min(1e-8)
                    alpha = per_sample((a1 / (a1 + a2)).clamp(0, self.alpha_max), x)
                    xk = ((1 - alpha) * (xk + self.eta * d1) + alpha * (x0 + self.eta * d2)).clamp(lo, hi)
                    adv = crit.is_adversarial(clf.forward(xk))
                    if bool(adv.any()):
                        nrm = lp_norm(xk - x0, self.p)
                        improved = adv & (nrm < bk)
                        hit = act[improved]
                        out[hit] = xk[improved]
                        best[hit] = nrm[improved]
                        bk = torch.where(improved, nrm, bk)
                        a = per_sample(adv, x)
                        xk = torch.where(a, x0 + self.beta * (xk - x0), xk)
                        if self.eps is not None:
                            keep = ~(bk <= self.eps)
                            act, x0, xk, labels, bk = act[keep], x0[keep], xk[keep], labels[keep], bk[keep]
                            crit = crit[keep]
                            tw = None if tw is None else tw[keep]
                    bar.update(1)
        bar.close()
        return out

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        return self.attack(clf, x, criterion, rng)


__all__ = ["FAB"]
