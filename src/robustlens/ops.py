"""Small tensor primitives that every analysis needs, written once.

- :func:`per_sample`: a per-sample ``(N,)`` tensor shaped to broadcast against a batch ``(N, ...)``.
- :func:`logit_margin`: the difference of logits ``z_y - max_{k != y} z_k`` with one sign convention: **positive
  exactly while the decision is** ``y``. Every margin in robustlens (the attacks' criterion, the margin loss, the
  DLR loss, the geometry margins) is this function or its negation.
- :func:`best_other_class`: ``argmax_{k != y} z_k``, the class whose boundary with ``y`` is nearest in logit space.
- :func:`finite_rows`: per sample, whether every entry is finite (NaN and +-Inf rows are never decisions).
"""

from __future__ import annotations

from torch import Tensor


def per_sample(v: Tensor, like: Tensor) -> Tensor:
    """``v`` of shape ``(N,)`` reshaped to ``(N, 1, ..., 1)`` with as many dimensions as ``like``."""
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def _without(logits: Tensor, labels: Tensor) -> Tensor:
    return logits.scatter(1, labels[:, None], float("-inf"))


def best_other_class(logits: Tensor, labels: Tensor) -> Tensor:
    """``argmax_{k != y} z_k`` per sample (``labels`` holds ``y``)."""
    return _without(logits, labels).argmax(1)


def logit_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """``z_y - max_{k != y} z_k`` per sample: positive exactly when ``labels`` is the decision.

    The one margin of robustlens (adv-lib's ``difference_of_logits``). Its negation is the margin loss (positive when
    misclassified); for a target ``t``, ``logit_margin(logits, t)`` is positive exactly when the decision is ``t``.
    A NaN logit makes the margin NaN. With a single class there is no other class and the margin is ``+inf``.
    """
    zy = logits.gather(1, labels[:, None]).squeeze(1)
    return zy - _without(logits, labels).amax(1)


def finite_rows(t: Tensor) -> Tensor:
    """Per sample (first dimension), whether every entry of ``t`` is finite.

    One reduction: a row's sum is NaN or infinite when any entry is (the only false alarm, finite entries whose sum
    overflows the dtype, is a broken row as well)."""
    if t.ndim == 1:
        return t.isfinite()
    return t.flatten(1).sum(1).isfinite()


__all__ = ["best_other_class", "finite_rows", "logit_margin", "per_sample"]
