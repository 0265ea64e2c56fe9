"""Everything that depends on the choice of Lp norm, in one place (attacks, certification and training share it).

Norm orders are floats: ``0``, ``1``, ``2``, ``float('inf')`` (and any ``p >= 1`` where the operation is defined).
All functions work per sample on batches of shape ``(N, ...)``. Equation numbers refer to Ortiz-Jimenez, Modas,
Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and Improving Deep Learning through
Adversarial Robustness", Proc. IEEE 2021.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .checks import NON_NEGATIVE, check
from .errors import ConfigError
from .ops import per_sample
from .seeding import SampleRNG

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


def check_eps(eps: float, name: str = "eps", owner: str | None = None) -> float:
    """A budget: a finite number >= 0 (``checks.NON_NEGATIVE``)."""
    return float(check(eps, name, NON_NEGATIVE, owner))


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
        return g / per_sample(flat.norm(dim=1).clamp_min(1e-12), g)
    if p == 1:
        idx = flat.abs().argmax(1)
        out = torch.zeros_like(flat)
        out.scatter_(1, idx[:, None], flat.gather(1, idx[:, None]).sign())
        return out.view_as(g)
    q = dual(p)
    qn = flat.abs().pow(q).sum(1).pow(1 / q).clamp_min(1e-12)
    return g.sign() * g.abs().pow(q - 1) / per_sample(qn.pow(q - 1), g)


def minimal_linear_step(w: Tensor, f: Tensor, p: float) -> Tensor:
    """The smallest-Lp vector ``r`` with ``<w, r> = f`` (per sample).

    Its norm is ``|f| / ||w||_q`` with q the dual exponent of p: the exact distance to the hyperplane
    ``<w, x> + b = 0`` when ``f`` is the value of the affine function (DeepFool's step, paper eq. (9)).
    """
    q = dual(p)
    wq = lp_norm(w, q).clamp_min(1e-12)
    return per_sample(f / wq, w) * steepest_direction(w, p)


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
        return torch.maximum(torch.minimum(delta, per_sample(e, delta)), -per_sample(e, delta))
    if p == 2:
        n = delta.flatten(1).norm(dim=1)
        factor = torch.where(n > e, e / n.clamp_min(1e-12), torch.ones_like(n))
        return delta * per_sample(factor, delta)
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
        return (2 * u - 1) * per_sample(e, like)
    if p not in (1, 2):
        raise ConfigError(f"random initialisation in the L{p} ball is implemented for p in 1, 2, inf")
    radius = rng.rand((), key=(*key, "radius")).to(like).reshape(n).pow(1.0 / d) * e
    if p == 2:
        g = rng.randn(shape, key=(*key, "dir")).to(like)
        direction = g / per_sample(g.flatten(1).norm(dim=1).clamp_min(1e-12), g)
    else:  # Laplace coordinates normalised to the L1 sphere are uniform on it
        u = rng.rand(shape, key=(*key, "lap")).to(like)
        sign = torch.where(rng.rand(shape, key=(*key, "sign")).to(like) < 0.5, -1.0, 1.0)
        lap = sign * (-torch.log1p(-u.clamp(max=1 - 1e-7)))
        direction = lap / per_sample(lap.flatten(1).abs().sum(1).clamp_min(1e-12), lap)
    return direction * per_sample(radius, like)


def sparse_l1_direction(g: Tensor, sparsity: float, blocked: Tensor | None = None) -> Tensor:
    """Unit-L1 sparse ascent direction: sign(g) on the coordinates whose |g| is in the top ``1 - sparsity`` fraction.

    The L1 steepest direction moves one coordinate only, which stalls against box bounds; SLIDE (Tramer & Boneh,
    2019) spreads the step over the largest gradient coordinates instead. ``blocked`` marks coordinates that must
    not move (e.g. pixels at a bound whose gradient points outside).
    """
    flat = g.flatten(1).abs()
    if blocked is not None:
        flat = flat.masked_fill(blocked.flatten(1), 0.0)
    d = flat.shape[1]
    k = max(1, min(d, int(round((1.0 - sparsity) * d))))
    thresh = flat.topk(k, dim=1).values[:, -1:]
    mask = (flat >= thresh) & (flat > 0)
    direction = torch.sign(g.flatten(1)) * mask
    count = mask.sum(1, keepdim=True).clamp_min(1).to(g.dtype)
    return (direction / count).view_as(g)


def _capped_sum_root(a: Tensor, b: Tensor, target: Tensor) -> Tensor:
    """Per row, the smallest ``t >= 0`` with ``sum_i a_i min(t, b_i) = target`` (a, b >= 0).

    Returns ``max b`` where the target is unreachable."""
    bs, order = b.sort(1)
    as_ = a.gather(1, order)
    ab = as_ * bs
    prefix = ab.cumsum(1) - ab  # sum over i < k of a_i b_i
    suffix = as_.flip(1).cumsum(1).flip(1)  # sum over i >= k of a_i
    value_at_break = prefix + bs * suffix  # nondecreasing in k
    k = (value_at_break < target[:, None]).sum(1, keepdim=True)
    reachable = k.squeeze(1) < bs.shape[1]
    kc = k.clamp(max=bs.shape[1] - 1)
    t = (target[:, None] - prefix.gather(1, kc)) / suffix.gather(1, kc).clamp_min(1e-30)
    return torch.where(reachable, t.squeeze(1).clamp_min(0), bs[:, -1])


def minimal_linear_step_in_box(w: Tensor, c: Tensor, p: float, low: Tensor, high: Tensor) -> Tensor:
    """The smallest-Lp ``d`` with ``<w, d> = c`` and ``low <= d <= high`` (per sample; ``low <= 0 <= high``).

    This is the projection onto a hyperplane intersected with the data box that FAB (Croce & Hein, 2020) needs,
    solved exactly for p in {1, 2, inf}: for Linf and L2 the optimum is ``d_i = sign(w_i) min(t g_i, room_i)``
    (g = 1 for Linf, |w_i| for L2) with one scalar ``t`` found from the sorted break points; for L1 the budget goes
    to the coordinates of largest |w_i| first. When the box makes the hyperplane unreachable, the step that gets
    closest to it is returned.
    """
    shape = w.shape
    wf = w.flatten(1)
    s = torch.where(c >= 0, 1.0, -1.0).to(wf)
    ws = wf * s[:, None]
    target = c.abs()
    room = torch.where(ws > 0, high.flatten(1), -low.flatten(1)).clamp(min=0, max=1e12)
    a = ws.abs()
    sgn = torch.sign(ws)
    if p == INF:
        t = _capped_sum_root(a, room, target)
        step = torch.minimum(t[:, None].expand_as(room), room)
    elif p == 2:
        br = torch.where(a > 0, room / a.clamp_min(1e-30), torch.zeros_like(room))
        t = _capped_sum_root(a * a, br, target)
        step = torch.minimum(t[:, None] * a, room)
    elif p == 1:
        srt, order = a.sort(1, descending=True)
        cap = srt * room.gather(1, order)
        cum = cap.cumsum(1)
        before = cum - cap
        full = cum <= target[:, None]
        partial = (~full) & (before < target[:, None])
        amount_sorted = torch.where(full, room.gather(1, order), torch.zeros_like(srt))
        amount_sorted = torch.where(partial, (target[:, None] - before) / srt.clamp_min(1e-30), amount_sorted)
        step = torch.zeros_like(a).scatter(1, order, amount_sorted)
    else:
        raise ConfigError(f"the box-constrained hyperplane projection is implemented for p in 1, 2, inf, got {p}")
    return (sgn * step).view(shape)


def project_l0_ball(delta: Tensor, k: Tensor) -> Tensor:
    """Keep, per sample, the ``round(k)`` entries of largest magnitude and zero the rest (projection onto L0 ball)."""
    flat = delta.flatten(1)
    kk = k.round().clamp(0, flat.shape[1]).long()
    rank = flat.abs().argsort(1, descending=True).argsort(1)
    return torch.where(rank < kk[:, None], flat, torch.zeros_like(flat)).view_as(delta)
