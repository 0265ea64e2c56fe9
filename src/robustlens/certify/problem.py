"""What every bound method shares: the checked threat model, the traced graph per chunk of inputs, the result.

:func:`chunks` validates the inputs through the :class:`~robustlens.Classifier` (or takes a bare module's inputs as
they are), traces the model's forward (:func:`~.graph.trace_bound_graph`) for each chunk of ``batch_size`` inputs
(so memory does not grow with N) and yields the graph with its input region. :class:`IntervalBounds` is the result
of every method: logit bounds, margin bounds and per-sample certificates.

Example:
    >>> for sl, graph, region, y in chunks(clf, x, eps=0.1, p=INF, y=y):
    ...     ...
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..classifier import Classifier
from ..errors import ConfigError
from ..norms import check_eps, parse_norm
from ..results import Result
from .graph import BoundGraph, nonfinite_error, trace_bound_graph
from .regions import Region, input_region


@dataclass
class IntervalBounds(Result):
    """Bounds of a network's outputs over an Lp ball around each input (every bound method returns one).

    Attributes:
        lower, upper: bounds of every logit over the ball, shape ``(N, C)``.
        margin_lower: lower bound of ``z_y - z_k`` for each class ``k`` (``+inf`` at ``k = y``), when labels are given.
        certified: per sample, whether the label is provably constant on the ball (``margin_lower > 0`` for all k).
        eps, p: the ball.
        method: the bound method (``"ibp"``, ``"crown"``, ``"alpha-crown"``).
    """

    lower: Tensor
    upper: Tensor
    margin_lower: Tensor | None
    certified: Tensor | None
    eps: float
    p: float
    method: str = "ibp"

    @property
    def certified_accuracy(self) -> float:
        if self.certified is None:
            raise ConfigError("certified accuracy needs labels: pass y to the bound method")
        return float(self.certified.float().mean())


def threat_model(eps: float, norm: float | str) -> tuple[float, float]:
    """Checked ``(eps, p)``: a finite ``eps >= 0`` and an Lp norm with ``p >= 1``."""
    eps = check_eps(eps)
    p = parse_norm(norm)
    if p < 1:
        raise ConfigError("bounds need an Lp ball with p >= 1 (L0 is not a convex ball): pass norm='inf', 2 or 1")
    return eps, p


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters without ``requires_grad`` for the duration (restored after): the bounds' vector-Jacobian
    products then record no graph through the weights (about 30% of CROWN's time on a small CNN)."""
    flags = [(prm, prm.requires_grad) for prm in module.parameters()]
    for prm, _ in flags:
        prm.requires_grad_(False)
    try:
        yield
    finally:
        for prm, flag in flags:
            prm.requires_grad_(flag)


def chunks(model: nn.Module | Classifier, x: Tensor, eps: float, p: float, y: Tensor | Sequence[int] | None,
           batch_size: int | None = None) -> Iterator[tuple[slice, BoundGraph, Region, Tensor | None]]:
    """``(slice, graph, input region, labels)`` for each chunk of the inputs."""
    clf = model if isinstance(model, Classifier) else None
    if clf is not None:
        x, yy = clf.validate(x, None if y is None else torch.as_tensor(y))
        bounds = clf.bounds if clf.check_bounds else None
        size = batch_size or clf.batch_size
    else:
        if not isinstance(x, Tensor) or x.ndim < 2 or not x.is_floating_point():
            raise ConfigError("inputs must be a floating-point batch (N, ...); wrap the model in a Classifier for "
                              "checked inputs and data bounds")
        yy = None if y is None else torch.as_tensor(y).long()
        bounds, size = None, batch_size or 256
    x = x.detach()
    mode = clf.analysis_mode() if clf is not None else contextlib.nullcontext()
    net = model.analysis_model if isinstance(model, Classifier) else model
    with mode, frozen(net):
        if clf is not None:
            clf.logits(x[:1], validate=False)  # the classifier's own checks of its output (classes, finiteness)
        for start in range(0, x.shape[0], size):
            sl = slice(start, min(start + size, x.shape[0]))
            graph = trace_bound_graph(model, x[sl])
            yield sl, graph, input_region(x[sl], eps, p, bounds), None if yy is None else yy[sl]


def assemble(lower: list[Tensor], upper: list[Tensor], margins: list[Tensor], y_given: bool, eps: float, p: float,
             method: str, y: Tensor | None = None) -> IntervalBounds:
    """The result of a method from its per-chunk bounds; NaN or infinite bounds are an error, never a number."""
    lo, hi = torch.cat(lower).detach(), torch.cat(upper).detach()
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        raise nonfinite_error(f"{method} bounds of the logits")
    margin_lower = certified = None
    if y_given:
        m = torch.cat(margins).detach()
        assert y is not None
        if not bool(torch.isfinite(m).all()):
            raise nonfinite_error(f"{method} bounds of the class margins")
        margin_lower = m.scatter(1, y[:, None].to(m.device), math.inf)
        certified = (margin_lower > 0).all(1)
    return IntervalBounds(lower=lo, upper=hi, margin_lower=margin_lower, certified=certified, eps=eps, p=p,
                          method=method)


__all__ = ["IntervalBounds", "assemble", "chunks", "threat_model"]
