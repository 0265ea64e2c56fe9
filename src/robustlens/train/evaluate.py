"""Accuracy of a classifier on clean or perturbed inputs, in batches: the held-out numbers a training run reports."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ..classifier import Classifier


def accuracy_under(
    clf: Classifier, x: Tensor, y: Tensor, perturb: Callable[[Tensor, Tensor], Tensor] | None = None,
    batch_size: int = 512,
) -> float:
    """Accuracy of ``clf`` on ``perturb(x, y)`` (clean when ``perturb`` is None), batched."""
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        xb, yb = x[i:i + batch_size].to(clf.device), y[i:i + batch_size].to(clf.device)
        if perturb is not None:
            xb = perturb(xb, yb)
        correct += int((clf.predict(xb, validate=False) == yb).sum())
    return correct / max(1, x.shape[0])


__all__ = ["accuracy_under"]
