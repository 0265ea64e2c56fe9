"""Carlini-Wagner L2 attack (Carlini & Wagner, IEEE S&P 2017): minimal L2 perturbations by penalised optimisation.

Replaces the constrained problem of eq. (8)-(9) of Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in
the Face of Adversity: Understanding and Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021 by
``min ||x' - x||_2^2 + c f(x')`` with the margin loss ``f = max(z_y - max_{k != y} z_k, -kappa)`` (targeted:
``max(max_{k != t} z_k - z_t, -kappa)``), searches the trade-off constant ``c`` per sample by bisection, and keeps
the box constraint (footnote 1) by optimising in ``tanh`` space: ``x' = mid + half * tanh(w)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import COUNT, NON_NEGATIVE, POSITIVE, Number, checked
from ..classifier import Classifier
from ..decision import Criterion, stop
from ..errors import ConfigError
from ..norms import INF
from ..ops import finite_rows
from ..seeding import SampleRNG
from .base import ATTACKS, MinimalNormAttack
from .minimal_loop import run_active


@ATTACKS.register("cw", aliases=("carlini-wagner", "cw-l2"), minimal=True, norms=(2.0,), steps="steps",
                  summary="Carlini-Wagner L2 with binary search over c")
class CarliniWagner(MinimalNormAttack):
    """Carlini-Wagner L2 with binary search over ``c``, Adam in ``tanh`` space, confidence ``kappa`` and early abort.

    For each of ``binary_search_steps`` rounds, every sample runs up to ``steps`` Adam iterations on
    ``||x' - x||_2^2 + c * f(x')`` (paper eq. 9 in penalised form); the smallest adversarial ``x'`` seen (with
    margin at least ``kappa``) is kept. After a round, ``c`` is bisected down for samples that succeeded and up
    (times 10 until a first success) for the others. A sample stops its round early when the loss has not
    decreased by 0.01% over the last ``steps // 10`` iterations (``abort_early``); stopped samples cost nothing.

    **The box.** ``x' = mid + half * tanh(w)`` keeps every iterate in ``[low, high]``. A pixel exactly at a bound
    would need ``w = +-inf``, where ``tanh`` has a zero derivative and the pixel could never move inward again.
    We therefore map the clean input through a box shrunk by ``box_shrink`` (relative to its half-width): a pixel at
    a bound starts ``box_shrink * half`` inside it, with a finite ``w`` and a non-zero derivative, so it can move
    inward. The distance term always measures the distance to the true clean input, so the optimisation pulls
    pixels that need not move back towards the bound. The default 1e-4 (the reference uses 1e-6) lets a saturated
    pixel leave the bound within a few hundred Adam steps at ``lr = 0.01``; with 1e-6 the loss barely changes at
    first and early abort stops the round before the pixel has moved. At the end, coordinates that moved by no more
    than that offset are put back to their clean value when the image stays adversarial, so the offset does not
    show up as changed pixels (L0) or distance.

    Success is decided on the image that is returned; a sample with no adversarial point is returned as its clean
    input (never a blank image).

    Args:
        steps: Adam iterations per binary-search round.
        binary_search_steps: rounds of the search over ``c``.
        initial_const: the starting ``c``.
        lr: Adam's learning rate (in ``w`` space).
        kappa: confidence: the margin by which ``x'`` must be adversarial.
        abort_early: stop a sample's round when its loss stalls.
        box_shrink: relative shrink of the box used to map the clean input to ``tanh`` space (see above).
        clip: must stay ``True``: the ``tanh`` parametrisation always respects the bounds.

    Example:
        >>> res = CarliniWagner(steps=200, binary_search_steps=5)(clf, x, y)
        >>> res.norm.median()
    """

    name = "cw"

    @checked(steps=COUNT, binary_search_steps=COUNT, initial_const=POSITIVE, lr=POSITIVE, kappa=NON_NEGATIVE,
             box_shrink=Number(low=0, high=0.5, low_open=True, high_open=True))
    def __init__(
        self,
        *,
        steps: int = 1000,
        binary_search_steps: int = 9,
        initial_const: float = 1e-3,
        lr: float = 0.01,
        kappa: float = 0.0,
        abort_early: bool = True,
        box_shrink: float = 1e-4,
        clip: bool = True,
    ) -> None:
        super().__init__(2, clip=clip)
        if not clip:
            raise ConfigError("the C&W tanh parametrisation always keeps examples in the bounds; use clip=True")
        self.steps = int(steps)
        self.binary_search_steps = int(binary_search_steps)
        self.initial_const = float(initial_const)
        self.lr = float(lr)
        self.kappa = float(kappa)
        self.abort_early = abort_early
        self.box_shrink = float(box_shrink)

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        n = x.shape[0]
        lo, hi = clf.bounds
        mid, half = (hi + lo) / 2, (hi - lo) / 2
        limit = 1.0 - self.box_shrink
        w0 = torch.atanh(((x - mid) / half).clamp(-limit, limit))
        best_norm = torch.full((n,), INF, dtype=x.dtype, device=x.device)
        best_adv = x.clone()  # failures come back as their clean input
        const = torch.full((n,), self.initial_const, dtype=x.dtype, device=x.device)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, INF)
        with torch.no_grad():  # samples adversarial from the start are returned as they are, at no further cost
            start = criterion.is_adversarial(clf.forward(x))
        best_norm[start] = 0.0
        todo = (~start).nonzero().flatten()
        if todo.numel() == 0:
            return best_adv
        dead = torch.zeros(n, dtype=torch.bool, device=x.device)  # stopped on a NaN or Inf gradient
        for _ in range(self.binary_search_steps):
            todo = todo[~dead[todo]]
            if todo.numel() == 0:
                break
            found = self._round(clf, x, criterion, todo, const, w0, (mid, half), best_norm, best_adv, dead)
            # bisection on c (Carlini & Wagner's schedule)
            upper = torch.where(found, torch.minimum(upper, const), upper)
            lower = torch.where(found, lower, torch.maximum(lower, const))
            const = torch.where(torch.isfinite(upper), (lower + upper) / 2, const * 10)
        out = self._snap(clf, x, criterion, best_adv, best_norm, self.box_shrink * half * (1 + 1e-3))
        return stop(out, dead & ~torch.isfinite(best_norm))

    def _snap(self, clf: Classifier, x: Tensor, criterion: Criterion, adv: Tensor, norm: Tensor, gap: float) -> Tensor:
        """Put back to their clean value the coordinates that moved by at most ``gap`` (the shrunk box's offset at
        saturated pixels, which would otherwise make every pixel count as changed in L0), where the snapped image
        stays adversarial by ``kappa`` (one forward pass per sample found)."""
        snapped = torch.where((adv - x).abs() <= gap, x, adv)
        sel = (torch.isfinite(norm) & (norm > 0) & (snapped != adv).flatten(1).any(1)).nonzero().flatten()
        if sel.numel() == 0:
            return adv
        with torch.no_grad():
            logits = clf.forward(snapped[sel])
        crit = criterion[sel]
        ok = crit.is_adversarial(logits) & (crit.margin(logits) <= -self.kappa)
        out = adv.clone()
        out[sel[ok]] = snapped[sel[ok]]
        return out

    def _round(
        self,
        clf: Classifier,
        x: Tensor,
        criterion: Criterion,
        todo: Tensor,
        const: Tensor,
        w0: Tensor,
        box: tuple[float, float],
        best_norm: Tensor,
        best_adv: Tensor,
        dead: Tensor,
    ) -> Tensor:
        """One binary-search round at fixed ``const``: Adam on the samples ``todo``; updates the best points in
        place and returns, per sample, whether an adversarial point was found in this round. Samples whose gradient
        is not finite stop and are marked in ``dead``."""
        n = x.shape[0]
        mid, half = box
        beta1, beta2, tiny = 0.9, 0.999, 1e-8
        check_every = max(1, self.steps // 10)
        w = w0.clone()
        m = torch.zeros_like(w)
        v = torch.zeros_like(w)
        prev = torch.full((n,), INF, dtype=x.dtype, device=x.device)
        found = torch.zeros(n, dtype=torch.bool, device=x.device)

        def step(j: Tensor, it: int) -> Tensor:
            idx = todo[j]
            crit = criterion[idx]
            c = const[idx]
            th = torch.tanh(w[idx])
            xa = mid + half * th
            diff = xa - x[idx]

            def penalty(z: Tensor) -> Tensor:
                return c * cw_margin_loss(z, crit, self.kappa)

            f, logits, g = clf.value_and_grad(xa, penalty)
            broken = ~(finite_rows(g) & finite_rows(f))
            dist = diff.flatten(1).pow(2).sum(1)
            adv = crit.is_adversarial(logits) & (crit.margin(logits) <= -self.kappa)  # with the confidence margin
            found[idx] |= adv
            l2 = dist.sqrt()
            better = adv & (l2 < best_norm[idx])
            if bool(better.any()):
                sel = idx[better]
                best_norm[sel] = l2[better]
                best_adv[sel] = xa[better]
            # gradient in w space (chain rule through tanh), then one Adam step
            grad_w = (2 * diff + g) * half * (1 - th.pow(2))
            t = it + 1
            mi = beta1 * m[idx] + (1 - beta1) * grad_w
            vi = beta2 * v[idx] + (1 - beta2) * grad_w.pow(2)
            m[idx], v[idx] = mi, vi
            w[idx] = w[idx] - self.lr * (mi / (1 - beta1**t)) / ((vi / (1 - beta2**t)).sqrt() + tiny)
            stalled = torch.zeros_like(adv)
            if self.abort_early and t % check_every == 0:
                loss = dist + f
                stalled = loss > prev[idx] * 0.9999
                prev[idx] = loss
            dead[idx[broken]] = True
            return stalled | broken

        run_active(todo.numel(), self.steps, step, x.device)
        return found


def cw_margin_loss(logits: Tensor, criterion: Criterion, kappa: float = 0.0) -> Tensor:
    """The C&W objective term ``max(margin, -kappa)`` (negative when adversarial by ``kappa``)."""
    return criterion.margin(logits).clamp_min(-kappa)


__all__ = ["CarliniWagner", "cw_margin_loss"]
