"""SparseFool (Modas, Moosavi-Dezfooli and Frossard, CVPR 2019): sparse (L1 / few-pixel) minimal perturbations.

Approximates the minimal L1 perturbation of eq. (8)-(9) under the data box (footnote 1) of Ortiz-Jimenez, Modas,
Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and Improving Deep Learning through
Adversarial Robustness", Proc. IEEE 2021. The L1 problem is
solved through a local linearisation of the decision boundary: DeepFool (L2) finds a point ``x_B`` on the boundary
near the current iterate, the boundary's normal ``w`` at ``x_B`` defines a hyperplane, and the smallest L1 step
that reaches that hyperplane *inside the box* is taken (an exact linear program, ``norms.minimal_linear_step_in_box``
with ``p = 1``: the budget goes to the coordinates of largest ``|w_i|`` first, each up to its room in the box). The
L1 optimum of a linear problem touches few coordinates, so the perturbation is sparse (its L0 norm is available as
``res.norms(0)``).

With ``lam > 1`` the hyperplane lies ``lam`` times as far as the boundary point, so the step usually crosses the
real boundary well before its end: the paper's solver (and the reference implementations) stop only when the
*linearised* boundary is crossed, and every coordinate moved after the real crossing is a wasted pixel. Here the
step is trimmed to its shortest adversarial prefix (coordinates in the solver's order, found by bisection in a few
forward passes); BENCHMARKS.md ("SparseFool on the same 20 digits") compares the pixels changed with and without
the trim and with torchattacks' SparseFool, which takes the normal at the ``lam``-scaled point instead of at ``x_B``
and starts every step from the clean input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..checks import COUNT, NON_NEGATIVE, OPTIONAL_COUNT, Number, checked
from ..classifier import Classifier
from ..decision import Criterion, stop
from ..norms import minimal_linear_step_in_box
from ..ops import finite_rows
from ..seeding import SampleRNG
from .base import ATTACKS, MinimalNormAttack
from .deepfool import DeepFool
from .minimal_loop import run_active


@ATTACKS.register("sparsefool", minimal=True, norms=(1.0,), steps="max_iter",
                  summary="SparseFool, sparse minimal L1 within the box")
class SparseFool(MinimalNormAttack):
    """SparseFool: sparse adversarial perturbations by L1 steps towards linearised boundaries (paper eq. 8-9).

    Each outer iteration, on the samples not yet adversarial:

    1. DeepFool (L2) from the current iterate ``x_i`` gives a boundary point ``x_B``;
    2. the boundary normal ``w`` is the input gradient of the logit difference at ``x_B``;
    3. ``x_i`` moves to the hyperplane ``<w, x - x0 - lam (x_B - x0)> = 0`` with the smallest L1 step inside the
       box (``lam >= 1`` places the hyperplane beyond the boundary, which trades a larger perturbation for fewer
       iterations on curved boundaries);
    4. the candidate ``x0 + (1 + overshoot)(x_i - x0)`` is clipped and checked; if it is adversarial and ``trim``
       is on, the step keeps only its shortest prefix (coordinates in the order the solver filled them, largest
       ``|w_i|`` first) whose candidate is still adversarial, and the sample stops.

    The overshoot scales the *total* perturbation, as in :class:`~robustlens.attacks.deepfool.DeepFool`. On an
    affine binary classifier with the box inactive and ``lam = 1``, one iteration returns the exact minimal L1
    perturbation ``|w.x + b| / ||w||_inf`` times ``(1 + deepfool_overshoot)(1 + overshoot)``.

    Args:
        lam: the factor ``lambda >= 1`` placing the hyperplane beyond the boundary point (3 in the paper for
            ImageNet-size inputs; 1 is the plain linearisation).
        overshoot: final scaling of the total perturbation.
        max_iter: outer iterations per sample.
        deepfool_overshoot, deepfool_iter, candidates: the inner DeepFool's settings.
        trim: stop at the first adversarial point along the last step instead of at the (linearised) hyperplane:
            bisection on the number of coordinates moved, ``ceil(log2(K))`` forward passes for a step of ``K``
            coordinates. ``False`` takes the paper's whole step.
        clip: keep examples in the classifier's bounds (the L1 step is then box-constrained).

    Cost per outer iteration and unfinished sample: one forward pass (the check), the inner DeepFool (one forward
    and ``candidates`` backward passes per inner iteration) and one forward and backward pass for the normal; the
    trim adds a few forward passes once per sample. Samples that are adversarial stop costing compute.

    Example:
        >>> res = SparseFool(lam=1.0)(clf, x, y)
        >>> res.norms(0).median()  # pixels changed
    """

    name = "sparsefool"

    @checked(lam=Number(low=1), overshoot=NON_NEGATIVE, max_iter=COUNT, deepfool_overshoot=NON_NEGATIVE,
             deepfool_iter=COUNT, candidates=OPTIONAL_COUNT)
    def __init__(
        self,
        *,
        lam: float = 1.0,
        overshoot: float = 0.02,
        max_iter: int = 20,
        deepfool_overshoot: float = 0.02,
        deepfool_iter: int = 50,
        candidates: int | None = 10,
        trim: bool = True,
        clip: bool = True,
    ) -> None:
        super().__init__(1, clip=clip)
        self.lam = float(lam)
        self.overshoot = float(overshoot)
        self.max_iter = int(max_iter)
        self.deepfool_overshoot = float(deepfool_overshoot)
        self.deepfool_iter = int(deepfool_iter)
        self.candidates = candidates
        self.trim = bool(trim)
        self._deepfool = DeepFool(
            norm=2, overshoot=deepfool_overshoot, max_iter=deepfool_iter, candidates=candidates, clip=clip
        )

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        n = x.shape[0]
        lo, hi = clf.bounds
        scale = 1.0 + self.overshoot
        xi = x.clone()  # the iterate: the last point reached on the solver's path (no overshoot)

        def candidate(x0: Tensor, pt: Tensor) -> Tensor:  # the point checked: x0 + (1 + overshoot)(pt - x0)
            out = x0 + scale * (pt - x0)
            return clf.clip(out) if self.clip else out

        def step(idx: Tensor, it: int) -> Tensor:
            crit = criterion[idx]
            finished = torch.zeros(idx.shape[0], dtype=torch.bool, device=x.device)
            if it == 0:  # samples already misclassified cost one forward pass and are left alone
                with torch.no_grad():
                    finished = crit.is_adversarial(clf.forward(x[idx]))
                if bool(finished.all()):
                    return finished
            todo = ~finished
            sel = idx[todo]
            crit = crit[todo]
            x0, xs = x[sel], xi[sel]
            xb = self._deepfool.run(clf, xs, crit, rng.subset(sel))
            _, _, g = clf.logit_jacobian(xb, crit.boundary_weights)
            broken = ~(finite_rows(xb) & finite_rows(g))
            if bool(broken.any()):  # the inner DeepFool or the normal met a NaN or Inf gradient: stop the sample
                stop(xi, sel[broken])
                finished[todo.nonzero().flatten()[broken]] = True
                keep = ~broken
                todo = ~finished
                sel, crit, x0, xs, xb, g = sel[keep], crit[keep], x0[keep], xs[keep], xb[keep], g[keep]
                if sel.numel() == 0:
                    return finished
            w = g[:, 0]
            target = x0 + self.lam * (xb - x0)  # a point of the hyperplane
            c = (w * (target - xs)).flatten(1).sum(1)
            if self.clip:
                low, high = lo - xs, hi - xs
            else:
                low, high = torch.full_like(xs, -1e12), torch.full_like(xs, 1e12)
            d = minimal_linear_step_in_box(w, c, 1.0, low, high)
            with torch.no_grad():
                adv = crit.is_adversarial(clf.forward(candidate(x0, xs + d)))
            if self.trim and bool(adv.any()):
                a = adv.nonzero().flatten()
                d[a] = self._first_adversarial_prefix(clf, crit[a], x0[a], xs[a], d[a], w[a], candidate)
            xi[sel] = xs + d
            finished[todo] = adv
            return finished

        run_active(n, self.max_iter, step, x.device)
        return candidate(x, xi)

    @staticmethod
    def _first_adversarial_prefix(
        clf: Classifier, crit: Criterion, x0: Tensor, xs: Tensor, d: Tensor, w: Tensor, candidate: Callable[..., Tensor]
    ) -> Tensor:
        """The shortest prefix of the L1 step ``d`` (coordinates in the solver's order, largest ``|w_i|`` first) whose
        candidate is adversarial, by bisection on the number of coordinates: ``d`` itself is adversarial and the
        empty prefix (the iterate ``xs``) is not. One forward pass per halving and sample still searching."""
        flat = d.flatten(1)
        moved = flat != 0
        key = torch.where(moved, w.flatten(1).abs(), torch.full_like(flat, -1.0))
        rank = key.argsort(1, descending=True).argsort(1)  # position of each coordinate on the solver's path
        lo_k = torch.zeros(flat.shape[0], dtype=torch.long, device=d.device)
        hi_k = moved.sum(1)
        while True:
            act = (hi_k - lo_k > 1).nonzero().flatten()
            if act.numel() == 0:
                break
            mid = (lo_k[act] + hi_k[act]) // 2
            part = torch.where(rank[act] < mid[:, None], flat[act], 0.0).view_as(d[act])
            with torch.no_grad():
                ok = crit[act].is_adversarial(clf.forward(candidate(x0[act], xs[act] + part)))
            hi_k[act] = torch.where(ok, mid, hi_k[act])
            lo_k[act] = torch.where(ok, lo_k[act], mid)
        return torch.where(rank < hi_k[:, None], flat, 0.0).view_as(d)


def l0_fraction(perturbation: Tensor) -> Tensor:
    """Per-sample fraction of input coordinates changed (a convenience for reporting SparseFool's sparsity)."""
    flat = perturbation.flatten(1)
    return (flat.abs() > 1e-12).to(flat.dtype).mean(1)


__all__ = ["SparseFool", "l0_fraction"]
