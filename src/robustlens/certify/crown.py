"""CROWN and alpha-CROWN: linear relaxation bounds, propagated backwards over the model's traced forward.

CROWN (Zhang, Weng, Chen, Hsieh and Daniel, "Efficient Neural Network Robustness Certification with General
Activation Functions", NeurIPS 2018) bounds ``lam . z`` by replacing every ReLU with two lines valid on its
pre-activation interval and carrying ``lam`` back to the input, where the linear function is minimised in closed
form over the ball (``lam . x - eps ||lam||_q``): :mod:`.linear`. The pre-activation intervals come from the same
backward pass started at each pre-activation layer, in order, intersected with the IBP intervals (both are sound);
layers whose interval is already exact (one affine layer after the input) keep it. Non-ReLU monotone nodes (Tanh,
Sigmoid, max pooling) are bounded by intervals on CROWN's pre-activation bounds. The margins ``z_y - z_k`` are the
specification (verified accuracy at eps: the paper's certified robustness after eq. (12)). CROWN alone can be
looser than intervals (an unstable ReLU's lower line ``h`` dips below the interval's ``relu >= 0``), so each
reported margin bound is the better of CROWN's and the interval bound on CROWN's tightened pre-activations (both
sound): never looser than IBP.

alpha-CROWN (Xu, Zhang, Wang, Wang, Jana, Lin and Hsieh, "Fast and Complete: Enabling Complete Neural Network
Verification with Rapid and Massively Parallel Incomplete Verifiers", ICLR 2021) treats the lower slopes of the
unstable ReLUs as parameters in ``[0, 1]`` (one per margin, sample and neuron) and maximises the margin bounds by
projected gradient ascent (Adam), starting from CROWN's slopes and keeping each bound's best value, so it is never
looser than CROWN. Here the slopes are optimised for the final margins; the intermediate intervals are CROWN's.

Example:
    >>> b = crown_bounds(Classifier(net), x, eps=0.1, norm="inf", y=y)                # CROWN
    >>> b = crown_bounds(Classifier(net), x, eps=0.1, y=y, alpha=True, steps=20)      # alpha-CROWN
    >>> b.certified_accuracy
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..analyses import register_analysis
from ..checks import COUNT, POSITIVE, checked
from ..classifier import Classifier
from .graph import BoundGraph
from .linear import LinearBackward, ReluRelaxation, identity_spec, margin_spec
from .problem import IntervalBounds, assemble, chunks, threat_model
from .regions import Box, Region, as_box, exact_nodes, interval_step

#: Elements of the spec tensors of one backward pass for an intermediate layer (rows are split to fit).
SPEC_BUDGET = 2**24


def _tight_box(back: LinearBackward, i: int, relax: dict[int, ReluRelaxation], box: Box) -> Box:
    """CROWN bounds of node ``i``'s neurons (every neuron, both sides), intersected with its IBP ``box``."""
    value = back.graph.nodes[i].value
    n, m = value.shape[0], value[0].numel()
    per_row = max(1, n * max(node.value[0].numel() for node in back.graph.nodes[: i + 1]))
    step = max(1, SPEC_BUDGET // per_row)
    lows, highs = [], []
    for start in range(0, m, step):
        rows = slice(start, min(start + step, m))
        lows.append(back.lower(i, identity_spec(value, rows, 1.0), relax))
        highs.append(-back.lower(i, identity_spec(value, rows, -1.0), relax))
    lo = torch.cat(lows).T.reshape(value.shape)
    hi = torch.cat(highs).T.reshape(value.shape)
    return Box(torch.maximum(lo, box.lo), torch.minimum(hi, box.hi))


def crown_regions(graph: BoundGraph, region: Region, p: float) -> tuple[list[Region], dict[int, ReluRelaxation]]:
    """Regions of every node (pre-activations tightened by CROWN) and the relaxation of every ReLU."""
    regions: list[Region] = [region]
    relax: dict[int, ReluRelaxation] = {}
    pre, exact = graph.preactivations(), exact_nodes(graph.nodes, p)
    back = LinearBackward(graph, regions)
    for i, node in enumerate(graph.nodes[1:], 1):
        if node.kind == "relu":
            box = as_box(regions[node.inputs[0]])
            relax[i] = ReluRelaxation(box.lo, box.hi)
        regions.append(interval_step(node, regions))
        if i in pre and i not in exact:
            regions[i] = _tight_box(back, i, relax, as_box(regions[i]))
    return regions, relax


def _optimise_alpha(back: LinearBackward, out: int, spec: Tensor, relax: dict[int, ReluRelaxation], best: Tensor,
                    steps: int, lr: float) -> Tensor:
    k, n = spec.shape[:2]
    alphas = {i: r.default_alpha.expand(k, *r.lo.shape).clone().requires_grad_(True)
              for i, r in relax.items() if bool(r.unstable.any())}
    if not alphas:
        return best
    params = list(alphas.values())
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        with torch.enable_grad():
            bound = back.lower(out, spec, relax, alphas)
            best = torch.maximum(best, bound.detach())
            # autograd.grad, not backward: the model's own parameters must not collect gradients
            grads = torch.autograd.grad(-bound.sum(), params)
        for a, g in zip(params, grads, strict=True):
            a.grad = g
        opt.step()
        with torch.no_grad():
            for a in alphas.values():
                a.clamp_(0, 1)
    with torch.no_grad():
        return torch.maximum(best, back.lower(out, spec, relax, alphas))


@checked(steps=COUNT, lr=POSITIVE)
def crown_bounds(
    model: nn.Module | Classifier,
    x: Tensor,
    eps: float,
    norm: float | str = "inf",
    y: Tensor | Sequence[int] | None = None,
    *,
    alpha: bool = False,
    steps: int = 20,
    lr: float = 0.1,
    batch_size: int | None = None,
) -> IntervalBounds:
    """Sound bounds of the logits (and class margins) over the Lp ball around each input, by CROWN or alpha-CROWN.

    Args:
        model: a module or a :class:`Classifier`; its ``forward`` is traced (see :data:`~.graph.SUPPORTED`).
        x: inputs ``(N, ...)``.
        eps, norm: the ball (Linf clipped to the classifier's bounds, or any ``p >= 1``).
        y: labels; when given, margin bounds ``z_y - z_k`` and per-sample certificates are returned.
        alpha: optimise the ReLU lower slopes for the margins (alpha-CROWN) with ``steps`` Adam steps of size
            ``lr``.
        batch_size: inputs per chunk (default: the classifier's ``batch_size``).

    Returns:
        :class:`IntervalBounds` with ``method`` ``"crown"`` or ``"alpha-crown"``.
    """
    eps, p = threat_model(eps, norm)
    lower, upper, margins, labels = [], [], [], []
    with torch.no_grad():
        for _, graph, region, yy in chunks(model, x, eps, p, y, batch_size):
            regions, relax = crown_regions(graph, region, p)
            back = LinearBackward(graph, regions)
            out = graph.output
            box = as_box(regions[out])
            value = graph.nodes[out].value
            both = slice(0, value[0].numel())
            lo = back.lower(out, identity_spec(value, both, 1.0), relax).T.reshape(value.shape)
            hi = -back.lower(out, identity_spec(value, both, -1.0), relax).T.reshape(value.shape)
            lower.append(torch.maximum(lo, box.lo))
            upper.append(torch.minimum(hi, box.hi))
            if yy is not None:
                spec = margin_spec(yy, value.shape[1], value.dtype)
                # CROWN alone can be looser than intervals (a ReLU's lower line below 0 where the interval says
                # relu >= 0): the interval bound on CROWN's tightened regions is sound too, so take the better one
                bound = torch.maximum(back.lower(out, spec, relax), back.lower(out, spec, {}))
                if alpha:
                    bound = _optimise_alpha(back, out, spec, relax, bound, steps, lr)
                margins.append(bound.T)
                labels.append(yy)
    return assemble(lower, upper, margins, y is not None, eps, p, "alpha-crown" if alpha else "crown",
                    torch.cat(labels) if labels else None)


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> IntervalBounds:
    return crown_bounds(clf, x, 0.05, "inf", y)


def _smoke_alpha(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> IntervalBounds:
    return crown_bounds(clf, x, 0.05, 2, y, alpha=True, steps=3)


register_analysis("crown", kind="certify", smoke=_smoke, needs_gradients=False,
                  summary="CROWN bounds of the logits and margins over an Lp ball")(crown_bounds)
register_analysis("alpha-crown", kind="certify", smoke=_smoke_alpha, needs_gradients=False,
                  summary="alpha-CROWN bounds (optimised ReLU slopes) of the margins over an Lp ball")(crown_bounds)

__all__ = ["crown_bounds", "crown_regions"]
