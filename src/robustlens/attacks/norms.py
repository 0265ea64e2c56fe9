"""Everything that depends on the choice of Lp norm, in one place.

Norm orders are floats: ``0``, ``1``, ``2``, ``float('inf')`` (and any ``p >= 1`` where the operation is defined).
All functions work per sample on batches of shape ``(N, ...)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import ConfigError
from ..seeding import SampleRNG

INF = float("inf")
_NAMES = {"0": 0.0, "l0": 0.0, "1": 1.0, "l1": 1.0, "2": 2.0, "l2": 2.0, "inf": INF, "linf": INF}


def parse_norm(p: float | int | str) -> float:
    """Normalise a norm order given as ``2``, ``'L2'``, ``'linf'``, ``np.inf``... to a float."""
    if isinstance(p, str):
        key = p.strip().lower()
        if key not in _NAMES:
            raise ConfigError(f"unknown norm {p!r}; use one of 0, 1, 2, 'inf' (or 'L0', 'L1', 'L2', 'Linf')")
        return _NAMES[key]
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise ConfigError(f"unknown norm {p!r}; use one of 0, 1, 2, 'inf'") from None
    if math.isnan(value) or (value < 1 and value != 0):
        raise ConfigError(f"norm order must be 0 or >= 1 (1, 2, inf...), got {p!r}")
    return value


def norm_name(p: float) -> str:
    return "Linf" if p == INF else f"L{int(p) if float(p).is_integer() else p}"


def check_eps(eps: float) -> float:
    eps = float(eps)
    if not math.isfinite(eps) or eps < 0:
        raise ConfigError(f"eps must be a finite number >= 0, got {eps}")
    return eps


def dual(p: float) -> float:
    """The dual exponent q with 1/p + 1/q = 1 (``inf`` for 1 and ``1`` for ``inf``)."""
    if p == 1:
        return INF
    if p == INF:
        return 1.0
    if p < 1:
        raise ConfigError(f"the dual norm is defined for p >= 1, got {p}")
    return p / (p - 1)


def lp_norm(x: Tensor, p: float) -> Tensor:
    """Per-sample Lp norm of a batch ``(N, ...) -> (N,)``; ``p = 0`` counts non-zero entries."""
    flat = x.flatten(1)
    if p == 0:
        return (flat.abs() > 1e-12).sum(1).to(x.dtype)
    if p == INF:
        return flat.abs().amax(1)
    if p == 1:
        return flat.abs().sum(1)
    if p == 2:
        return flat.norm(dim=1)
    return flat.abs().pow(p).sum(1).pow(1 / p)


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.ndim - 1)))


def as_batch(value: float | Tensor, n: int, like: Tensor) -> Tensor:
    """A per-sample ``(N,)`` tensor from a scalar or an ``(N,)`` tensor."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return t.expand(n).clone() if t.ndim == 0 else t


def steepest_direction(g: Tensor, p: float) -> Tensor:
    """The unit-Lp direction of steepest ascent for gradient ``g``: argmax_{||d||_p<=1} <g, d>.

    L2: g/||g||; Linf: sign(g); L1: the coordinate of largest |g|; general p: sign(g) |g|^(q-1) / ||g||_q^(q-1).
    """
    if p == INF:
        return g.sign()
    flat = g.flatten(1)
    if p == 2:
        return g / _view(flat.norm(dim=1).clamp_min(1e-12), g)
    if p == 1:
        idx = flat.abs().argmax(1)
        out = torch.zeros_like(flat)
        out.scatter_(1, idx[:, None], flat.gather(1, idx[:, None]).sign())
        return out.view_as(g)
    q = dual(p)
    qn = flat.abs().pow(q).sum(1).pow(1 / q).clamp_min(1e-12)
    return g.sign() * g.abs().pow(q - 1) / _view(qn.pow(q - 1), g)


def minimal_linear_step(w: Tensor, f: Tensor, p: float) -> Tensor:
    """The smallest-Lp vector ``r`` with ``<w, r> = f`` (per sample).

    Its norm is ``|f| / ||w||_q`` with q the dual exponent of p: the exact distance to the hyperplane
    ``<w, x> + b = 0`` when ``f`` is the value of the affine function (DeepFool's step, paper eq. (9)).
    """
    q = dual(p)
    wq = lp_norm(w, q).clamp_min(1e-12)
    return _view(f / wq, w) * steepest_direction(w, p)


def project_l1_ball(delta: Tensor, eps: Tensor) -> Tensor:
    """Euclidean projection of each sample onto the L1 ball of radius ``eps`` (Duchi et al., 2008)."""
    flat = delta.flatten(1)
    inside = flat.abs().sum(1) <= eps
    if bool(inside.all()):
        return delta
    a = flat.abs()
    srt, _ = a.sort(1, descending=True)
    cums = srt.cumsum(1)
    ks = torch.arange(1, flat.shape[1] + 1, device=delta.device, dtype=delta.dtype)
    cond = srt - (cums - eps[:, None]) / ks > 0
    rho = (cond * ks).amax(1, keepdim=True).long().clamp_min(1) - 1  # last index where cond holds
    theta = (cums.gather(1, rho) - eps[:, None]) / (rho + 1).to(delta.dtype)
    proj = flat.sign() * (a - theta).clamp_min(0)
    out = torch.where(inside[:, None], flat, proj)
    return out.view_as(delta)


def project(delta: Tensor, p: float, eps: float | Tensor) -> Tensor:
    """Project each sample's perturbation onto the Lp ball of radius ``eps`` (p in {1, 2, inf})."""
    e = as_batch(eps, delta.shape[0], delta)
    if p == INF:
        return torch.maximum(torch.minimum(delta, _view(e, delta)), -_view(e, delta))
    if p == 2:
        n = delta.flatten(1).norm(dim=1)
        factor = torch.where(n > e, e / n.clamp_min(1e-12), torch.ones_like(n))
        return delta * _view(factor, delta)
    if p == 1:
        return project_l1_ball(delta, e)
    raise ConfigError(f"projection onto the L{p} ball is implemented for p in 1, 2, inf")


def random_in_ball(
    like: Tensor, p: float, eps: float | Tensor, rng: SampleRNG, key: tuple[object, ...] = ()
) -> Tensor:
    """A random perturbation per sample, uniform in the volume of the Lp ball of radius ``eps`` (p in 1, 2, inf).

    Draws come from ``rng`` (per-sample streams), so they do not depend on batching.
    """
    n, shape = like.shape[0], tuple(like.shape[1:])
    e = as_batch(eps, n, like)
    d = like[0].numel() if n else 1
    if p == INF:
        u = rng.rand(shape, key=(*key, "cube")).to(like)
        return (2 * u - 1) * _view(e, like)
    if p not in (1, 2):
        raise ConfigError(f"random initialisation in the L{p} ball is implemented for p in 1, 2, inf")
    radius = rng.rand((), key=(*key, "radius")).to(like).reshape(n).pow(1.0 / d) * e
    if p == 2:
        g = rng.randn(shape, key=(*key, "dir")).to(like)
        direction = g / _view(g.flatten(1).norm(dim=1).clamp_min(1e-12), g)
    else:  # Laplace coordinates normalised to the L1 sphere are uniform on it
        u = rng.rand(shape, key=(*key, "lap")).to(like)
        sign = torch.where(rng.rand(shape, key=(*key, "sign")).to(like) < 0.5, -1.0, 1.0)
        lap = sign * (-torch.log1p(-u.clamp(max=1 - 1e-7)))
        direction = lap / _view(lap.flatten(1).abs().sum(1).clamp_min(1e-12), lap)
    return direction * _view(radius, like)
