"""Pieces shared by the minimal-norm attacks (paper eq. 8-9).

- :func:`logit_jacobian`: the gradients of several linear combinations of the logits in one forward pass and one
  batched backward (a vector-Jacobian product per combination), so that DeepFool and SparseFool differentiate only
  the candidate classes, and count exactly the passes they use.
- :func:`box_free_mask`: which coordinates can still move in the direction of a step without leaving the bounds.
- :func:`run_active`: the loop skeleton in which finished samples stop costing compute.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..classifier import Classifier


def logit_jacobian(
    clf: Classifier, x: Tensor, weights: Tensor | Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor, Tensor]:
    """Values and input gradients of ``K`` linear combinations of the logits, per sample.

    Args:
        clf: the classifier (one forward pass per sample and ``K`` backward passes per sample are counted).
        x: a batch ``(N, *shape)``.
        weights: coefficients ``(N, K, C)``, or a function of the logits ``(N, C)`` (detached) returning them;
            combination ``k`` of sample ``n`` is ``sum_c weights[n, k, c] * logits[n, c]`` (e.g. ``e_k - e_y``
            for the logit difference ``z_k - z_y`` that DeepFool linearises).

    Returns:
        ``(logits, values, grads)`` with ``values`` of shape ``(N, K)`` and ``grads`` of shape ``(N, K, *shape)``.

    One forward pass is shared by all ``K`` gradients; the ``K`` vector-Jacobian products run as one batched
    backward (``is_grads_batched``), falling back to ``K`` backward calls on the same graph for models whose
    backward cannot be vectorised.
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logits = clf.forward(xg)
        w = (weights(logits.detach()) if callable(weights) else weights).to(logits.dtype)  # (N, K, C)
        k = w.shape[1]
        values = torch.einsum("nkc,nc->nk", w, logits.detach())
        go = w.permute(1, 0, 2).contiguous()  # (K, N, C)
        try:
            (grads,) = torch.autograd.grad(logits, xg, go, is_grads_batched=True, retain_graph=True)
        except RuntimeError:  # pragma: no cover - depends on the model's operators
            parts = [torch.autograd.grad(logits, xg, go[i], retain_graph=i < k - 1)[0] for i in range(k)]
            grads = torch.stack(parts)
    clf.counter.backward += x.shape[0] * k
    return logits.detach(), values, grads.transpose(0, 1)


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


__all__ = ["box_free_mask", "logit_jacobian", "run_active"]
