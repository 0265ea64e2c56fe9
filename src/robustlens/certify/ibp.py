"""Interval bound propagation (IBP): sound output bounds over an Lp ball, on the model's traced forward.

Verification (paper Sec. II-B, the certified robustness defined after eq. (12), refs. [42]-[45]) asks whether the
label is constant on a whole ball around ``x``. IBP (Gowal et al., "On the Effectiveness of Interval Bound
Propagation for Training Verifiably Robust Models", 2018; Mirman et al., ICML 2018) propagates a box through the
network node by node (:mod:`.regions`), on the computation ``forward`` really performs (:mod:`.graph`: traced with
``torch.fx``, the :class:`~robustlens.Classifier`'s normalization included, unsupported operations refused). The
bounds are sound (every point of the ball maps inside them) and exact for a single affine layer.

An Lp ball (``p < inf``) goes exactly through the first Linear or Conv layer (``W c + b +- eps ||W_j||_q``, ``q``
the dual exponent, through the normalization) and as a box afterwards. The class margins ``z_y - z_k`` are bounded
by carrying ``e_y - e_k`` backwards through the affine operations after the last non-linear one (the last layer,
a negation, ...) before taking the interval (the "elision" of the last layer, Gowal et al. Sec. 3), which certifies
more than comparing logit bounds.

auto_LiRPA (IBP and CROWN) is the library for this; its release on PyPI (0.3) pins ``torch < 1.13`` and does not
import with NumPy 2 (see docs/certify.md), so the bound methods are implemented here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..analyses import register_analysis
from ..classifier import Classifier
from .graph import BoundNode
from .linear import LinearBackward, margin_spec
from .problem import IntervalBounds, assemble, chunks, threat_model
from .regions import Region, as_box, interval_step


def propagate(graph_nodes: list[BoundNode], region: Region) -> list[Region]:
    """IBP regions of every node, from the input region."""
    regions = [region]
    for node in graph_nodes[1:]:
        regions.append(interval_step(node, regions))
    return regions


def interval_bounds(
    model: nn.Module | Classifier,
    x: Tensor,
    eps: float,
    norm: float | str = "inf",
    y: Tensor | Sequence[int] | None = None,
) -> IntervalBounds:
    """Sound lower/upper bounds of the logits over the Lp ball of radius ``eps`` around each input (IBP).

    Args:
        model: a module, or a :class:`Classifier` wrapping one (its bounds clip the Linf box and its
            ``mean``/``std`` are part of the traced computation). Its ``forward`` is traced: see
            :data:`~.graph.SUPPORTED` for the operations it may use.
        x: inputs ``(N, ...)``.
        eps: radius of the ball.
        norm: ``'inf'`` (box, clipped to the classifier's bounds), ``2`` or any ``p >= 1``.
        y: labels; when given, class-margin bounds and a per-sample certificate are returned.

    Returns:
        :class:`IntervalBounds`; ``certified[i]`` means no point of the ball changes sample ``i``'s label.

    Example:
        >>> b = interval_bounds(Classifier(net), x, eps=0.1, norm="inf", y=y)
        >>> b.certified_accuracy
    """
    eps, p = threat_model(eps, norm)
    lower, upper, margins, labels = [], [], [], []
    with torch.no_grad():
        for _, graph, region, yy in chunks(model, x, eps, p, y):
            regions = propagate(graph.nodes, region)
            out = as_box(regions[graph.output])
            lower.append(out.lo)
            upper.append(out.hi)
            if yy is not None:
                spec = margin_spec(yy, out.lo.shape[1], out.lo.dtype)
                margins.append(LinearBackward(graph, regions).lower(graph.output, spec, {}).T)
                labels.append(yy)
    return assemble(lower, upper, margins, y is not None, eps, p, "ibp", torch.cat(labels) if labels else None)


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> IntervalBounds:
    return interval_bounds(clf, x, 0.05, "inf", y)


register_analysis("interval-bounds", kind="certify", smoke=_smoke, needs_gradients=False)(interval_bounds)

__all__ = ["IntervalBounds", "interval_bounds", "propagate"]
