"""Interval bound propagation (IBP) for small sequential networks: sound output bounds over an Lp ball.

Verification (paper Sec. II-B, the certified robustness defined after eq. (12), refs. [42]-[45]) asks whether the
label is constant on a whole ball around ``x``. IBP (Gowal et al., "On the Effectiveness of Interval Bound
Propagation for Training Verifiably Robust Models", 2018; Mirman et al., ICML 2018) propagates a box through the
network layer by layer, in centre/radius form: an affine layer maps ``(c, r)`` to ``(W c + b, |W| r)`` and a
monotone layer (ReLU, max-pooling) maps the two ends. The bounds are sound (every point of the ball maps inside
them) and exact for a single affine layer.

The first affine layer is handled exactly for an L2 (or any ``p > 1``) ball too: ``W(x + delta) + b`` with
``||delta||_p <= eps`` lies in ``W x + b +- eps ||W_j||_q`` (``q`` the dual exponent), taking the ``mean``/``std``
normalization of the :class:`~robustlens.Classifier` into account. A linear last layer is folded into the class
margins ``z_y - z_k`` ("elision"), which certifies more than comparing logit bounds.

auto_LiRPA (IBP and CROWN) is the library for this; its release on PyPI (0.3) does not import with NumPy 2
(see docs/certify.md), so these few layers are implemented here. Supported: Linear, Conv1d/2d, ReLU, Flatten,
BatchNorm (eval), MaxPool, AvgPool, Dropout and Identity, nested in ``nn.Sequential``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..classifier import Classifier
from ..errors import ConfigError
from ..norms import INF, check_eps, dual, parse_norm
from ..results import Result

_MONOTONE = (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.Flatten, nn.Identity,
             nn.Dropout, nn.AdaptiveAvgPool2d)


@dataclass
class IntervalBounds(Result):
    """Output of :func:`interval_bounds`.

    Attributes:
        lower, upper: bounds of every logit over the ball, shape ``(N, C)``.
        margin_lower: lower bound of ``z_y - z_k`` for each class ``k`` (``+inf`` at ``k = y``), when labels are given.
        certified: per sample, whether the label is provably constant on the ball (``margin_lower > 0`` for all k).
        eps, p: the ball.
    """

    lower: Tensor
    upper: Tensor
    margin_lower: Tensor | None
    certified: Tensor | None
    eps: float
    p: float

    @property
    def certified_accuracy(self) -> float:
        if self.certified is None:
            raise ConfigError("certified accuracy needs labels: pass y to interval_bounds()")
        return float(self.certified.float().mean())


def _layers(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        out: list[nn.Module] = []
        for m in model:
            out += _layers(m)
        return out
    if isinstance(model, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.modules.batchnorm._BatchNorm, *_MONOTONE)):
        return [model]
    children = list(model.children())
    if len(children) == 1 and isinstance(children[0], nn.Sequential):
        return _layers(children[0])  # a wrapper module whose forward is its one Sequential
    raise ConfigError(
        f"interval bounds support nn.Sequential stacks of Linear, Conv, ReLU, Flatten, BatchNorm, pooling and "
        f"Dropout layers; got {type(model).__name__}. Rewrite the model as an nn.Sequential of those layers"
    )


def _affine(layer: nn.Module, c: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
    if isinstance(layer, nn.Linear):
        return layer(c), F.linear(r, layer.weight.abs())
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
        kw = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation, "groups": layer.groups}
        if layer.padding_mode != "zeros":
            raise ConfigError("interval bounds support zero-padded convolutions only")
        return layer(c), conv(r, layer.weight.abs(), None, **kw)  # type: ignore[arg-type]
    assert isinstance(layer, nn.modules.batchnorm._BatchNorm)
    if layer.training or layer.running_var is None:
        raise ConfigError("BatchNorm must be in eval mode with running statistics for interval bounds")
    scale = layer.weight / torch.sqrt(layer.running_var + layer.eps) if layer.affine else \
        1 / torch.sqrt(layer.running_var + layer.eps)
    shape = (1, -1) + (1,) * (c.ndim - 2)
    return layer(c), r * scale.abs().view(shape)


def _first_layer_ball(layer: nn.Module, c: Tensor, scale: Tensor, eps: float, p: float) -> tuple[Tensor, Tensor]:
    """Exact image of ``{c + scale * delta : ||delta||_p <= eps}`` under the first affine layer."""
    q = dual(p)
    if isinstance(layer, nn.Linear):
        w = layer.weight * scale.reshape(1, -1)  # (out, in): effective weights on delta
        wn = w.abs().amax(1) if q == INF else w.abs().pow(q).sum(1).pow(1 / q)
        return layer(c), (eps * wn).expand(c.shape[0], -1)
    assert isinstance(layer, (nn.Conv1d, nn.Conv2d)) and q != INF
    conv = F.conv1d if isinstance(layer, nn.Conv1d) else F.conv2d
    kw = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation, "groups": layer.groups}
    sq = conv(scale.abs().pow(q).expand(1, *c.shape[1:]), layer.weight.abs().pow(q), None, **kw)  # type: ignore
    return layer(c), (eps * sq.pow(1 / q)).expand(c.shape[0], *sq.shape[1:])


def interval_bounds(
    model: nn.Module | Classifier,
    x: Tensor,
    eps: float,
    norm: float | str = "inf",
    y: Tensor | Sequence[int] | None = None,
) -> IntervalBounds:
    """Sound lower/upper bounds of the logits over the Lp ball of radius ``eps`` around each input (IBP).

    Args:
        model: an ``nn.Sequential`` of supported layers, or a :class:`Classifier` wrapping one (its bounds clip the
            Linf box and its ``mean``/``std`` are applied).
        x: inputs ``(N, ...)``.
        eps: radius of the ball.
        norm: ``'inf'`` (box, clipped to the classifier's bounds), ``2`` or any ``p >= 1``; an Lp ball (p < inf)
            is propagated exactly through the first affine layer and as a box afterwards.
        y: labels; when given, class-margin bounds and a per-sample certificate are returned.

    Returns:
        :class:`IntervalBounds`; ``certified[i]`` means no point of the ball changes sample ``i``'s label.
    """
    eps = check_eps(eps)
    p = parse_norm(norm)
    if p == 0:
        raise ConfigError("interval bounds need an Lp ball with p >= 1 (L0 is not a convex ball)")
    clf = model if isinstance(model, Classifier) else None
    net: nn.Module = model.model if isinstance(model, Classifier) else model
    if clf is not None:
        x, yy = clf.validate(x, None if y is None else torch.as_tensor(y))
    else:
        yy = None if y is None else torch.as_tensor(y).long()
    layers = _layers(net)
    if any(getattr(m, "training", False) and isinstance(m, nn.modules.batchnorm._BatchNorm) for m in layers):
        raise ConfigError("BatchNorm must be in eval mode with running statistics for interval bounds: model.eval()")
    x = x.detach()
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = clf.mean.view(shape) if clf is not None and clf.mean is not None else torch.zeros(1, dtype=x.dtype)
    std = clf.std.view(shape) if clf is not None and clf.std is not None else torch.ones(1, dtype=x.dtype)
    with torch.no_grad():
        if p == INF:
            lo, hi = x - eps, x + eps
            if clf is not None and clf.check_bounds:
                lo, hi = lo.clamp(min=clf.bounds[0]), hi.clamp(max=clf.bounds[1])
            lo, hi = (lo - mean) / std, (hi - mean) / std
            c, r = (hi + lo) / 2, (hi - lo) / 2
            ball = False
        else:
            c = (x - mean) / std
            r = torch.zeros_like(c)
            scale = (torch.ones_like(x[:1]) / std).expand_as(x[:1])  # per-coordinate scale of delta
            ball = True
        last = len(layers) - 1
        margin_lower = certified = None
        for i, layer in enumerate(layers):
            if isinstance(layer, (nn.Flatten, nn.Identity, nn.Dropout)):
                if isinstance(layer, nn.Flatten):
                    c, r = layer(c), layer(r)
                    if ball:
                        scale = layer(scale)
                continue
            if ball and isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)) and not (
                isinstance(layer, (nn.Conv1d, nn.Conv2d)) and dual(p) == INF
            ):
                if i == last and yy is not None and isinstance(layer, nn.Linear):
                    margin_lower = _ball_margin(layer, c, scale, eps, p, yy)
                c, r = _first_layer_ball(layer, c, scale, eps, p)
                ball = False
                continue
            if ball:  # fall back to the enclosing box |delta_i| <= eps * scale_i
                r = eps * scale.abs().expand_as(c)
                ball = False
            if i == last and yy is not None and isinstance(layer, nn.Linear):
                margin_lower = _box_margin(layer, c, r, yy)
            if isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.modules.batchnorm._BatchNorm)):
                c, r = _affine(layer, c, r)
            else:  # monotone non-decreasing layers map the ends of the interval
                lo, hi = layer(c - r), layer(c + r)
                c, r = (hi + lo) / 2, (hi - lo) / 2
        if ball:
            r = eps * scale.abs().expand_as(c)
        lower, upper = c - r, c + r
        if yy is not None:
            if margin_lower is None:  # no linear last layer: compare logit bounds
                ly = lower.gather(1, yy[:, None])
                margin_lower = ly - upper
            margin_lower = margin_lower.scatter(1, yy[:, None], math.inf)
            certified = (margin_lower > 0).all(1)
    return IntervalBounds(lower=lower, upper=upper, margin_lower=margin_lower, certified=certified, eps=eps, p=p)


def _margin_weights(layer: nn.Linear, y: Tensor) -> tuple[Tensor, Tensor]:
    w = layer.weight[y][:, None, :] - layer.weight[None, :, :]  # (N, C, in): w_y - w_k
    b = 0 if layer.bias is None else layer.bias[y][:, None] - layer.bias[None, :]
    return w, b  # type: ignore[return-value]


def _box_margin(layer: nn.Linear, c: Tensor, r: Tensor, y: Tensor) -> Tensor:
    w, b = _margin_weights(layer, y)
    return torch.einsum("nki,ni->nk", w, c) + b - torch.einsum("nki,ni->nk", w.abs(), r)


def _ball_margin(layer: nn.Linear, c: Tensor, scale: Tensor, eps: float, p: float, y: Tensor) -> Tensor:
    w, b = _margin_weights(layer, y)
    w_eff = w * scale.reshape(1, 1, -1)
    q = dual(p)
    wn = w_eff.abs().amax(2) if q == INF else w_eff.abs().pow(q).sum(2).pow(1 / q)
    return torch.einsum("nki,ni->nk", w, c) + b - eps * wn


__all__ = ["IntervalBounds", "interval_bounds"]
