"""Input regions and interval bound propagation (IBP) over a :class:`~.graph.BoundGraph`, one node at a time.

A region is what is known about one node's values over the threat model: a :class:`Box` (``lo <= z <= hi``) or, for
an Lp ball and the element-wise maps that follow the input (normalization, reshapes), a :class:`Ball`
``{c + scale * delta : ||delta||_p <= eps}``. :func:`interval_step` is IBP (Gowal et al., "On the Effectiveness of
Interval Bound Propagation for Training Verifiably Robust Models", 2018): an affine node maps centre and radius
``(c, r)`` to ``(A c + b, |A| r)``; a non-decreasing node maps the two ends. The first Linear or Conv layer that
mixes the coordinates of a ball gets its exact image ``W c + b +- eps ||W_j * scale||_q`` (``q`` the dual exponent
of ``p``). :func:`concretize` is the other half of every linear bound: the minimum of ``lam . z`` over a region.

Example:
    >>> region = input_region(x, eps=0.1, p=INF, bounds=(0.0, 1.0))
    >>> regions = [region]
    >>> for node in graph.nodes[1:]:
    ...     regions.append(interval_step(node, regions))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..norms import INF, dual
from .graph import BoundNode


@dataclass
class Box:
    """``lo <= z <= hi`` element-wise."""

    lo: Tensor
    hi: Tensor

    @property
    def c(self) -> Tensor:
        return (self.hi + self.lo) / 2

    @property
    def r(self) -> Tensor:
        return (self.hi - self.lo) / 2


@dataclass
class Ball:
    """``{c + scale * delta : ||delta||_p <= eps}``: an Lp ball seen through element-wise affine maps."""

    c: Tensor
    scale: Tensor
    eps: float
    p: float

    def box(self) -> Box:
        """The enclosing box (``|delta_i| <= ||delta||_p <= eps``)."""
        r = self.eps * self.scale.abs()
        return Box(self.c - r, self.c + r)


Region = Box | Ball


def as_box(region: Region) -> Box:
    return region.box() if isinstance(region, Ball) else region


def input_region(x: Tensor, eps: float, p: float, bounds: tuple[float, float] | None) -> Region:
    """The threat model around ``x``: the Linf box clipped to the data ``bounds``, or the Lp ball (unclipped: a
    superset, so bounds over it stay sound)."""
    if p == INF:
        lo, hi = x - eps, x + eps
        if bounds is not None:
            lo, hi = lo.clamp(min=bounds[0]), hi.clamp(max=bounds[1])
        return Box(lo, hi)
    return Ball(x, torch.ones_like(x), eps, p)


def _exact_ball_image(node: BoundNode, ball: Ball) -> Box | None:
    """The exact box of a Linear / Conv layer over a ball (``None`` when it has no closed form here)."""
    m, q = node.module, dual(ball.p)
    c = node.fn(ball.c)
    if isinstance(m, nn.Linear):
        w = m.weight * ball.scale[:1].reshape(1, -1)
        wn = w.abs().amax(1) if q == INF else torch.linalg.vector_norm(w, ord=q, dim=1)
        r = (ball.eps * wn).expand_as(c)
        return Box(c - r, c + r)
    if isinstance(m, (nn.Conv1d, nn.Conv2d)) and q != INF:
        conv = torch.nn.functional.conv1d if isinstance(m, nn.Conv1d) else torch.nn.functional.conv2d
        kw = {"stride": m.stride, "padding": m.padding, "dilation": m.dilation, "groups": m.groups}
        sq = conv(ball.scale[:1].abs().pow(q), m.weight.abs().pow(q), None, **kw)  # type: ignore[arg-type]
        r = (ball.eps * sq.pow(1 / q)).expand_as(c)
        return Box(c - r, c + r)
    return None


def interval_step(node: BoundNode, regions: list[Region]) -> Region:
    """The region of ``node`` from the regions of its inputs (IBP)."""
    ins = [regions[i] for i in node.inputs]
    if node.kind == "affine":
        if len(ins) == 1 and isinstance(ins[0], Ball):
            ball = ins[0]
            if node.diag is not None:
                return Ball(node.fn(ball.c), node.diag(ball.scale), ball.eps, ball.p)
            exact = _exact_ball_image(node, ball)
            if exact is not None:
                return exact
        boxes = [as_box(r) for r in ins]
        assert node.abs_fn is not None
        c = node.fn(*[b.c for b in boxes])
        r = node.abs_fn(*[b.r for b in boxes])
        return Box(c - r, c + r)
    box = as_box(ins[0])  # relu and monotone nodes are non-decreasing: map the two ends
    return Box(node.fn(box.lo), node.fn(box.hi))


def elementwise_nodes(nodes: list[BoundNode]) -> set[int]:
    """Nodes whose region is an element-wise image of the input region (the input, then shifts, scales, reshapes):
    an interval (or ball) that is exact coordinate by coordinate."""
    out = {0}
    for i, n in enumerate(nodes):
        if n.kind == "affine" and n.diag is not None and len(n.inputs) == 1 and n.inputs[0] in out:
            out.add(i)
    return out


def exact_nodes(nodes: list[BoundNode], p: float) -> set[int]:
    """Nodes whose IBP interval is already the exact range: element-wise images of the input, and one affine layer
    applied to one of them (a single affine map of a box attains both ends of every output; of a ball, when
    :func:`interval_step` has its closed form)."""
    elem = elementwise_nodes(nodes)

    def exact_image(n: BoundNode) -> bool:
        if p == INF:
            return True
        return isinstance(n.module, nn.Linear) or isinstance(n.module, (nn.Conv1d, nn.Conv2d)) and dual(p) != INF

    return elem | {i for i, n in enumerate(nodes) if n.kind == "affine" and len(n.inputs) == 1
                   and n.inputs[0] in elem and exact_image(n)}


def _flat_sum(t: Tensor) -> Tensor:
    return t.flatten(2).sum(2)


def concretize(lam: Tensor, region: Region) -> Tensor:
    """``min over the region of lam . z`` for each spec row: ``lam`` of shape ``(K, N, *node_shape)`` -> ``(K, N)``.

    Over a box it is ``lam . c - |lam| . r``; over a ball ``lam . c - eps ||lam * scale||_q`` (Hoelder's
    inequality, attained).
    """
    if isinstance(region, Ball):
        w = (lam * region.scale).flatten(2)
        q = dual(region.p)
        wn = w.abs().amax(2) if q == INF else torch.linalg.vector_norm(w, ord=q, dim=2)
        return _flat_sum(lam * region.c) - region.eps * wn
    return _flat_sum(lam * region.c) - _flat_sum(lam.abs() * region.r)


__all__ = ["Ball", "Box", "Region", "as_box", "concretize", "elementwise_nodes", "exact_nodes", "input_region",
           "interval_step"]
