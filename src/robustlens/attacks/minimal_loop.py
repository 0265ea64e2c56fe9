"""Pieces shared by the minimal-norm attacks (paper eq. 8-9; Ortiz-Jimenez et al., "Optimism in the Face of
Adversity: Understanding and Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021).

- :func:`box_free_mask`: which coordinates can still move in the direction of a step without leaving the bounds.
- :func:`run_active`: the loop skeleton in which finished samples stop costing compute.
- :func:`walk_boundary`: after an attack has crossed the boundary, walk along it towards the clean input.

The gradients of several linear combinations of the logits from one forward pass and one batched backward (how
DeepFool, SparseFool and the refinements differentiate only the candidate classes) are
:meth:`Classifier.logit_jacobian`; the boundary normal they follow is :meth:`Criterion.boundary_weights`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..classifier import Classifier
from ..decision import Criterion
from ..norms import INF, lp_norm, minimal_linear_step, minimal_linear_step_in_box
from ..ops import finite_rows, per_sample


def box_free_mask(xa: Tensor, direction: Tensor, bounds: tuple[float, float], tol: float = 1e-7) -> Tensor:
    """Coordinates that can move along ``sign(direction)`` from ``xa`` without leaving ``bounds``.

    A coordinate at the lower bound cannot decrease and one at the upper bound cannot increase; everything else
    (including a pixel at a bound moving inward) is free. ``direction`` may carry extra leading dimensions after
    the batch one (e.g. ``(N, K, *shape)`` against ``xa`` of shape ``(N, *shape)``).
    """
    lo, hi = bounds
    extra = direction.ndim - xa.ndim
    xv = xa.reshape(xa.shape[0], *([1] * extra), *xa.shape[1:])
    at_lo = xv <= lo + tol
    at_hi = xv >= hi - tol
    return ~((at_lo & (direction < 0)) | (at_hi & (direction > 0)))


def run_active(
    n: int,
    max_iter: int,
    step: Callable[[Tensor, int], Tensor],
    device: torch.device | str = "cpu",
) -> Tensor:
    """Run ``step(active_indices, iteration)`` until every sample is done or ``max_iter`` is reached.

    ``step`` updates the attack state of the given samples and returns a boolean mask (over those samples) of the
    ones that are now finished; finished samples are never passed to ``step`` again, so they cost nothing.
    Returns the mask of samples that finished.
    """
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for it in range(max_iter):
        idx = (~done).nonzero().flatten()
        if idx.numel() == 0:
            break
        finished = step(idx, it)
        done[idx[finished]] = True
    return done


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1)


def walk_boundary(
    clf: Classifier,
    x: Tensor,
    criterion: Criterion,
    delta: Tensor,
    clean_margin: Tensor,
    p: float,
    clip: bool,
    *,
    rounds: int,
    mix: float = 0.5,
    probes: int = 3,
    tol: float = 1e-4,
    min_gain: float = 1e-3,
) -> None:
    """Move adversarial perturbations along the decision boundary towards smaller Lp norms (in place on ``delta``).

    A linearisation attack stops at the first boundary point its steps reach, which is a fixed point only of the
    linearisation at the clean input: where the boundary curves, the nearest boundary point lies elsewhere
    (DeepFool's full linear steps land measurably further out than a path of shorter steps). Each round, for every
    sample whose ``x + delta`` is adversarial:

    1. linearise the margin of the nearest other class (the target for a targeted attack) at ``x_b = x + delta``:
       value ``f``, normal ``w`` (one forward and one backward pass);
    2. ``r`` is the smallest-Lp perturbation of ``x`` (inside the bounds when ``clip``) that reaches the tangent
       hyperplane ``f + <w, r - delta> = 0``: the minimal perturbation if the boundary were flat at ``x_b``;
    3. the proposal direction is ``u = (1 - mix) delta + mix r`` (a damped move along the boundary: the tangent
       plane is only trusted part of the way), pulled back onto the boundary along the ray ``x + t u``: the crossing
       is found by at most ``probes`` forward passes (the tangent-plane estimate, a Newton step with the slope
       ``-<w, u>`` of the linearised margin, then secants, kept inside the bracket found so far; a probe that lands
       close to the aim ends the search), aiming at twice the margin of step 4, so that no probe lands on that
       threshold where another batch composition could decide it otherwise;
    4. the smallest probe that is adversarial with a margin below ``-tol |clean margin|`` (and below ``-1e-6`` of
       the largest logit) replaces ``delta`` if its norm is smaller. A sample whose norm did not shrink by
       ``min_gain`` (relative) leaves the walk.

    At the end one forward pass over the whole batch (the batch the caller decides success on) checks every moved
    point and puts back the starting perturbation of any that a different batch composition decides otherwise.

    A perturbation is only ever replaced by a smaller adversarial one inside the bounds, so the walk cannot undo a
    success; a sample that does not move in a round stops costing compute. The starting ``delta`` of a sample must
    be adversarial for the walk to move it. Norms 1, 2 and inf (any p >= 1 without ``clip``); ``clean_margin`` is
    ``criterion.margin`` at ``x`` (samples with a margin <= 0, or at zero perturbation, are left alone).
    """
    if rounds < 1 or not (p in (1.0, 2.0, INF) or not clip):
        return
    lo, hi = clf.bounds
    live = clean_margin > 0
    start = delta.clone()
    for _ in range(rounds):
        norm = lp_norm(delta, p)
        idx = (live & (norm > 0)).nonzero().flatten()
        if idx.numel() == 0:
            return
        crit = criterion[idx]
        xs, d, nd = x[idx], delta[idx], norm[idx]
        logits, f, g = clf.logit_jacobian(xs + d, crit.boundary_weights)
        adv = crit.is_adversarial(logits) & finite_rows(g)
        w, f = g[:, 0], f[:, 0]
        c = _dot(w, d) - f
        if clip:
            r = minimal_linear_step_in_box(w, c, p, lo - xs, hi - xs)
        else:
            r = minimal_linear_step(w, c, p)
        u = (1 - mix) * d + mix * r
        nu = lp_norm(u, p)
        wu = _dot(w, u)
        m0 = clean_margin[idx]
        t_max = nd / nu.clamp_min(1e-30)  # beyond this the proposal is no smaller than delta
        ok = adv & (wu > 0) & (nu > 0)
        # the margin a probe must reach to be kept: tol of the clean margin, and never below float noise (1e-6 of
        # the largest logit), so that a forward pass over another batch decides the returned point the same way
        accept = -torch.maximum(tol * m0, 1e-6 * logits.abs().amax(1))
        aim = 2 * accept
        # the crossing of h(t) = margin(x + t u) - aim, bracketed by a (clean side) and b (adversarial side)
        a, b = torch.zeros_like(nd), torch.full_like(nd, INF)
        best_t = torch.full_like(nd, INF)
        prev_t, prev_h = torch.full_like(nd, float("nan")), torch.full_like(nd, float("nan"))
        t = torch.where(ok, c / torch.where(ok, wu, torch.ones_like(wu)), torch.full_like(wu, INF))
        for probe in range(probes):
            t = torch.minimum(t, t_max)
            sel = (ok & torch.isfinite(t) & (t > a) & (t < b)).nonzero().flatten()
            if sel.numel() == 0:
                break
            ts = t[sel]
            cand = xs[sel] + per_sample(ts, u) * u[sel]
            if clip:
                cand = clf.clip(cand)
            with torch.no_grad():
                m = crit[sel].margin(clf.forward(cand))
            h = m - aim[sel]
            best_t[sel] = torch.where(m <= accept[sel], torch.minimum(best_t[sel], ts), best_t[sel])
            above = h > 0  # still on the clean side of the aim: the crossing is further out
            a[sel] = torch.where(above, ts, a[sel])
            b[sel] = torch.where(above, b[sel], ts)
            converged = h.abs() <= 0.25 * (accept[sel] - aim[sel])  # within a quarter of the gap to the threshold
            if probe == probes - 1:
                break
            # next probe: the secant through the last two probes; after the first, Newton's step with the slope
            # of the linearised margin along u (-<w, u>); bisection where that leaves the bracket
            pt, ph = prev_t[sel], prev_h[sel]
            secant = ts - h * (ts - pt) / (h - ph)
            newton = ts + h / wu[sel]
            nxt = torch.where(torch.isfinite(secant), secant, newton)
            lo_t, hi_t = a[sel], b[sel]
            # the fallback leans to the adversarial end, so that it does not land on the acceptance threshold
            mid = torch.where(torch.isfinite(hi_t), lo_t + 0.75 * (hi_t - lo_t), 2 * lo_t)
            nxt = torch.where((nxt > lo_t) & (nxt < hi_t), nxt, mid)
            prev_t[sel], prev_h[sel] = ts, h
            t = torch.full_like(t, INF)
            t[sel] = torch.where(converged, torch.full_like(nxt, INF), nxt)
        rows = torch.isfinite(best_t).nonzero().flatten()
        cand = xs[rows] + per_sample(best_t[rows], u) * u[rows]
        if clip:
            cand = clf.clip(cand)
        dn = cand - xs[rows]
        new_norm = lp_norm(dn, p)
        smaller = new_norm < nd[rows]
        delta[idx[rows[smaller]]] = dn[smaller]
        moved = torch.zeros_like(ok)
        moved[rows[new_norm < nd[rows] * (1 - min_gain)]] = True
        live[idx[~moved]] = False  # a sample that did not move (by min_gain) is done: the walk is deterministic
    changed = (delta != start).flatten(1).any(1)
    if bool(changed.any()):  # decide on the whole batch, as the caller will: a point that flips back is undone
        final = x + delta
        with torch.no_grad():
            kept = criterion.is_adversarial(clf.forward(clf.clip(final) if clip else final))
        undo = changed & ~kept
        delta[undo] = start[undo]


__all__ = ["box_free_mask", "run_active", "walk_boundary"]
