"""Robustness to random noise (paper eq. 7, 20, 21).

- :func:`noise_error_rate`: ``P(f(x + v) != f(x))`` for ``v ~ N(0, sigma^2 I)`` at several ``sigma`` (eq. 7).
- :func:`directional_distance`: the distance to the boundary along random unit directions ``v``, the norm of
  ``r_v(x) = argmin_{r in {a v}} ||r||_2 s.t. f(x + r) != f(x)`` (eq. 20), by a batched line search.
- :func:`sqrt_d_law`: the ratio ``||r_v|| / ||r*||`` against ``sqrt(D)`` (eq. 21; Fawzi, Moosavi-Dezfooli and
  Frossard, "Robustness of classifiers: from adversarial to random noise", NeurIPS 2016).

For a linear classifier the law is exact in distribution: with ``t = <w, v> / ||w||`` for ``v`` uniform on the
sphere, ``||r_v|| / ||r*|| = 1 / |t|`` and ``t^2 ~ Beta(1/2, (D-1)/2)``. Hence ``E[(||r*|| / ||r_v||)^2] = 1/D``
exactly (the "RMS constant" below is 1), and the median ratio is ``1 / sqrt(median Beta(1/2, (D-1)/2))``, which
tends to ``sqrt(D) / Phi^{-1}(3/4) ~ 1.4826 sqrt(D)``. The mean ratio itself is infinite (``t`` has positive
density at 0), which is why medians and inverse moments are reported.

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the face of adversity: Understanding and
improving deep learning through adversarial robustness", Proc. IEEE 2021 (Sec. II-A and III-B1, eq. 7, 20, 21).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..analyses import register_analysis
from ..checks import COUNT, NON_NEGATIVE_INT, OPEN_UNIT, OPTIONAL_COUNT, Number, checked
from ..classifier import Classifier
from ..errors import ConfigError
from ..ops import per_sample
from ..results import Result
from ..seeding import SampleRNG, generator
from ._common import evaluate_points, prepare, ray_boundary_distance

OPTIONAL_POSITIVE = Number(low=0, low_open=True, optional=True)


@dataclass
class NoiseResult(Result):
    """Error rate under isotropic Gaussian noise (eq. 7).

    Attributes:
        sigmas: ``(S,)`` noise standard deviations (per coordinate).
        error_rate: ``(S,)`` fraction of noisy copies whose decision differs from the clean one, over all samples.
        per_sample: ``(N, S)`` the same per sample.
        ci_low, ci_high: ``(S,)`` Clopper-Pearson 95% interval of ``error_rate`` (draws treated as independent).
        n_draws: noisy copies per sample and sigma.
    """

    sigmas: Tensor
    error_rate: Tensor
    per_sample: Tensor
    ci_low: Tensor
    ci_high: Tensor
    n_draws: int
    seed: int = 0


def _smoke_noise(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> NoiseResult:
    span = clf.bounds[1] - clf.bounds[0]
    return noise_error_rate(clf, x, [0.05 * span, 0.5 * span], n_draws=4, seed=seed, progress=False)


@register_analysis("noise-error-rate", kind="geometry", smoke=_smoke_noise, needs_gradients=False,
                   summary="error rate under Gaussian noise of each sigma (eq. 7)")
@checked(n_draws=COUNT, batch_size=OPTIONAL_COUNT)
def noise_error_rate(
    clf: Classifier,
    x: Tensor,
    sigmas: Sequence[float] | Tensor,
    *,
    n_draws: int = 100,
    clip: bool = False,
    seed: int = 0,
    indices: Tensor | Sequence[int] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> NoiseResult:
    """``P(f(x + v) != f(x))``, ``v ~ N(0, sigma^2 I)`` for each sigma (paper eq. 7).

    The same standard-normal draws are scaled by every sigma (common random numbers), so the curve is monotone
    for a single sample whose decision region is star-shaped. Draws are keyed by ``(seed, index)``: the numbers
    do not depend on batching. ``clip=True`` clamps noisy inputs to the classifier's bounds.
    """
    from scipy.stats import binomtest

    sig = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if sig.numel() == 0 or not bool((torch.isfinite(sig) & (sig >= 0)).all()):
        raise ConfigError(f"sigmas must be a non-empty list of finite standard deviations >= 0, got {sigmas!r}")
    x, _ = prepare(clf, x, owner="noise_error_rate")
    n, shape = x.shape[0], x.shape[1:]
    clean = clf.predict(x, validate=False)
    rng = SampleRNG(seed, indices, n=n)
    bs = batch_size or clf.batch_size
    per_block = max(1, bs // n_draws)
    wrong = torch.zeros(n, sig.numel(), dtype=torch.float64)
    s_dev = sig.to(x.dtype).to(x.device)
    blocks = range(0, n, per_block)
    for b0 in tqdm(blocks, desc="noise", disable=not progress, leave=False):
        sel = torch.arange(b0, min(n, b0 + per_block))
        g = rng.subset(sel).randn((n_draws, *shape), key=("gaussian-noise",)).to(x)  # (b, M, *shape)
        b = sel.numel()
        pts_per_sigma = b * n_draws
        total = pts_per_sigma * sig.numel()
        owner = sel.to(x.device).repeat_interleave(n_draws)
        flat = g.reshape(pts_per_sigma, *shape)
        out = torch.empty(total, dtype=torch.bool, device=x.device)

        def make(s: slice, owner: Tensor = owner, flat: Tensor = flat, pts: int = pts_per_sigma) -> Tensor:
            idx = torch.arange(s.start, s.stop, device=x.device)
            si, pi = idx // pts, idx % pts
            p = x[owner[pi]] + per_sample(s_dev[si], flat) * flat[pi]
            return clf.clip(p) if clip else p

        def red(z: Tensor, s: slice, owner: Tensor = owner, out: Tensor = out, pts: int = pts_per_sigma) -> None:
            idx = torch.arange(s.start, s.stop, device=x.device)
            out[s] = z.argmax(1) != clean[owner[idx % pts]]

        evaluate_points(clf, make, total, red, batch_size=bs)
        counts = out.view(sig.numel(), b, n_draws).sum(2).T.double().cpu()
        wrong[b0 : b0 + b] = counts
    k = wrong.sum(0)
    m = n * n_draws
    lo, hi = [], []
    for kk in k.tolist():
        ci = binomtest(int(kk), m).proportion_ci(0.95, method="exact")
        lo.append(ci.low)
        hi.append(ci.high)
    return NoiseResult(
        sigmas=sig, error_rate=k / m, per_sample=wrong / n_draws, ci_low=torch.tensor(lo, dtype=torch.float64),
        ci_high=torch.tensor(hi, dtype=torch.float64), n_draws=n_draws, seed=seed,
    )


def random_unit_directions(
    n: int, m: int, shape: Sequence[int], *, seed: int = 0, indices: Tensor | Sequence[int] | None = None,
    key: str = "random-direction", dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``(n, m, *shape)`` directions uniform on the unit L2 sphere, keyed by ``(seed, sample index)``."""
    g = SampleRNG(seed, indices, n=n).randn((m, *shape), key=(key,)).to(dtype)
    flat = g.reshape(n, m, -1)
    return (flat / flat.norm(dim=2, keepdim=True).clamp_min(1e-30)).view(n, m, *shape)


@dataclass
class DirectionalResult(Result):
    """Distance to the boundary along random unit directions ``||r_v(x)||_2`` (eq. 20), ``(N, M)``.

    ``inf`` where no class change was found within ``max_dist`` on either side.
    """

    distance: Tensor
    max_dist: float
    forward_passes: int
    seed: int = 0


def _smoke_directional(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> DirectionalResult:
    return directional_distance(clf, x, n_directions=3, n_grid=8, seed=seed, progress=False)


@register_analysis("directional-distance", kind="geometry", smoke=_smoke_directional, needs_gradients=False,
                   summary="distance to the boundary along random directions (eq. 20)")
@checked(n_directions=COUNT, max_dist=OPTIONAL_POSITIVE, n_grid=COUNT, rtol=OPEN_UNIT, batch_size=OPTIONAL_COUNT)
def directional_distance(
    clf: Classifier,
    x: Tensor,
    *,
    n_directions: int = 20,
    directions: Tensor | None = None,
    max_dist: float | None = None,
    n_grid: int = 32,
    rtol: float = 1e-4,
    seed: int = 0,
    indices: Tensor | Sequence[int] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> DirectionalResult:
    """``||r_v(x)||_2 = min |a|`` such that ``f(x + a v) != f(x)`` along random unit ``v`` (paper eq. 20).

    Both signs of ``a`` are searched; the rays are scanned on a geometric grid up to ``max_dist`` and the first
    crossing is bisected to relative accuracy ``rtol`` (all rays of all samples in the same batched passes; a ray
    that has crossed stops costing compute). The line is not clipped to the data bounds (eq. 20 has no box).

    Args:
        directions: ``(N, M, *input_shape)`` unit directions to use instead of random ones.
        max_dist: scan length; default ``(high - low) * sqrt(D)``, the diagonal of the data box.
    """
    x, _ = prepare(clf, x, owner="directional_distance")
    n, shape, d = x.shape[0], x.shape[1:], x[0].numel()
    if directions is None:
        v = random_unit_directions(n, n_directions, shape, seed=seed, indices=indices, dtype=x.dtype).to(x.device)
    else:
        if directions.shape[0] != n or tuple(directions.shape[2:]) != tuple(shape):
            raise ConfigError(f"directions must have shape (N, M, *{tuple(shape)}), got {tuple(directions.shape)}")
        v = directions.detach().to(x)
    m = v.shape[1]
    if max_dist is None:
        lo, hi = clf.bounds
        max_dist = (hi - lo) * math.sqrt(d) if math.isfinite(hi - lo) else 10.0 * math.sqrt(d)
    clean = clf.predict(x, validate=False)
    rays = torch.cat([v, -v], 1)
    dist, passes = ray_boundary_distance(
        clf, x, clean, rays, float(max_dist), n_grid=n_grid, rtol=rtol, batch_size=batch_size, progress=progress
    )
    both = torch.minimum(dist[:, :m], dist[:, m:])
    return DirectionalResult(distance=both.cpu(), max_dist=float(max_dist), forward_passes=passes, seed=seed)


def linear_sqrt_d_constants(d: int) -> dict[str, float]:
    """The constants of eq. (21) for a linear classifier in dimension ``d`` (exact, see the module docstring).

    ``rms``: ``sqrt(D) * sqrt(E[(r*/r_v)^2])`` = 1; ``median``: ``median(r_v / r*) / sqrt(D)``.
    """
    from scipy.stats import beta

    med_t2 = float(beta.ppf(0.5, 0.5, (d - 1) / 2))
    return {"rms": 1.0, "median": 1.0 / math.sqrt(med_t2 * d)}


@dataclass
class SqrtDResult(Result):
    """The ``sqrt(D)`` law of eq. (21): ``||r_v|| = Theta(sqrt(D) ||r*||)``.

    Attributes:
        dim: the input dimension D.
        adversarial_norm: ``(N,)`` ``||r*(x)||_2`` (minimal L2 perturbation).
        directional: ``(N, M)`` ``||r_v(x)||_2`` along random directions.
        ratio: ``(N, M)`` ``||r_v|| / ||r*||``.
        slope: least-squares slope (through the origin) of the per-sample median ``||r_v||`` on
            ``sqrt(D) ||r*||``; ``slope_std``: its bootstrap standard deviation over samples (the spread).
        median_constant: ``median(ratio) / sqrt(D)``; ``rms_constant``: ``1 / (sqrt(D) sqrt(mean((r*/r_v)^2)))``.
        linear_median_constant / linear_rms_constant: the same constants for a linear classifier in dimension D.
        per_sample_constant: ``(N,)`` per-sample median ratio over ``sqrt(D)``.
    """

    dim: int
    adversarial_norm: Tensor
    directional: Tensor
    ratio: Tensor
    slope: float
    slope_std: float
    median_constant: float
    rms_constant: float
    linear_median_constant: float
    linear_rms_constant: float
    per_sample_constant: Tensor
    settings: dict[str, Any] = field(default_factory=dict)


def _smoke_sqrt_d(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> SqrtDResult:
    return sqrt_d_law(clf, x, y, n_directions=3, n_bootstrap=5, seed=seed, progress=False)


@register_analysis("sqrt-d-law", kind="geometry", smoke=_smoke_sqrt_d,
                   summary="random-noise distance against sqrt(D) times the adversarial one (eq. 21)")
@checked(n_directions=COUNT, max_dist=OPTIONAL_POSITIVE, n_bootstrap=NON_NEGATIVE_INT, batch_size=OPTIONAL_COUNT)
def sqrt_d_law(
    clf: Classifier,
    x: Tensor,
    y: Tensor | None = None,
    *,
    adversarial_norm: Tensor | None = None,
    n_directions: int = 50,
    max_dist: float | None = None,
    n_bootstrap: int = 200,
    seed: int = 0,
    indices: Tensor | Sequence[int] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> SqrtDResult:
    """Measure eq. (21): how many times larger than the adversarial norm random noise must be (Fawzi et al. 2016).

    ``adversarial_norm`` is ``||r*(x)||_2`` per sample; when omitted it is computed by DeepFool (L2). Samples
    without a finite adversarial norm are dropped from the fit.
    """
    x, y = prepare(clf, x, y, "sqrt_d_law")
    d = x[0].numel()
    if adversarial_norm is None:
        from ..attacks.deepfool import DeepFool

        adversarial_norm = DeepFool(norm=2)(clf, x, y).norm
    rn = torch.as_tensor(adversarial_norm, dtype=torch.float64).cpu().flatten()
    if rn.numel() != x.shape[0]:
        raise ConfigError(f"adversarial_norm needs one value per input ({x.shape[0]}), got {rn.numel()}")
    dirres = directional_distance(
        clf, x, n_directions=n_directions, max_dist=max_dist, seed=seed, indices=indices,
        batch_size=batch_size, progress=progress,
    )
    rv = dirres.distance.double()
    ok = torch.isfinite(rn) & (rn > 0)
    if not bool(ok.any()):
        raise ConfigError("no sample has a finite adversarial norm: nothing to compare the noise distances with")
    ratio = rv / rn[:, None]
    sq = math.sqrt(d)
    med_rv = rv.median(1).values
    xs, ys = (sq * rn)[ok], med_rv[ok]
    fin = torch.isfinite(ys)
    xs, ys = xs[fin], ys[fin]

    def fit(a: Tensor, b: Tensor) -> float:
        return float((a * b).sum() / (a * a).sum().clamp_min(1e-300))

    slope = fit(xs, ys) if xs.numel() else math.nan
    g = generator(seed, "sqrt-d-bootstrap")
    boots = []
    for _ in range(n_bootstrap if xs.numel() > 1 else 0):
        i = torch.randint(xs.numel(), (xs.numel(),), generator=g)
        boots.append(fit(xs[i], ys[i]))
    inv2 = (1.0 / ratio[ok]).pow(2)  # inf ratios contribute 0
    lin = linear_sqrt_d_constants(d)
    return SqrtDResult(
        dim=d, adversarial_norm=rn, directional=rv, ratio=ratio, slope=slope,
        slope_std=float(np.std(boots)) if boots else math.nan,
        median_constant=float(ratio[ok].flatten().median()) / sq,
        rms_constant=1.0 / (sq * math.sqrt(float(inv2.mean()))),
        linear_median_constant=lin["median"], linear_rms_constant=lin["rms"],
        per_sample_constant=ratio.median(1).values / sq,
        settings={"n_directions": n_directions, "max_dist": dirres.max_dist, "seed": seed},
    )


def plot_noise(result: NoiseResult, ax: Any = None, *, label: str | None = None, color: str | None = None) -> Any:
    """Error rate under Gaussian noise against sigma (eq. 7), with its 95% interval. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.2))
    s = result.sigmas.numpy()
    (line,) = ax.plot(s, result.error_rate.numpy(), "o-", ms=3, label=label, color=color)
    ax.fill_between(s, result.ci_low.numpy(), result.ci_high.numpy(), alpha=0.25, color=line.get_color(), lw=0)
    ax.set_xlabel("noise sigma")
    ax.set_ylabel("P(f(x+v) != f(x))")
    if label:
        ax.legend()
    return ax


def plot_sqrt_d(results: dict[str, SqrtDResult], ax: Any = None, *, linear: bool = True) -> Any:
    """Per-sample median ``||r_v||`` against ``sqrt(D) ||r*||`` with the fitted slope (eq. 21), one colour per
    result, and (``linear``) the exact median constant of a linear classifier in the same dimension as a dashed line.
    Samples whose median ``||r_v||`` is beyond the scanned range are left out. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    top = 0.0
    for i, (name, r) in enumerate(results.items()):
        xs = math.sqrt(r.dim) * r.adversarial_norm.double().numpy()
        ys = r.directional.double().median(1).values.numpy()
        ok = np.isfinite(xs) & np.isfinite(ys)
        slope = f"slope {r.slope:.2f} +- {r.slope_std:.2f}" if math.isfinite(r.slope) else "no slope"
        ax.scatter(xs[ok], ys[ok], s=10, color=f"C{i}", label=f"{name}: {slope}")
        if ok.any():
            top = max(top, float(xs[ok].max()))
    t = np.linspace(0, top or 1.0, 10)
    for i, r in enumerate(results.values()):
        if math.isfinite(r.slope):
            ax.plot(t, r.slope * t, lw=1, color=f"C{i}")
    if linear and results:
        lin = next(iter(results.values())).linear_median_constant
        ax.plot(t, lin * t, "k--", lw=1, label=f"linear classifier ({lin:.2f})")
    ax.set_xlabel("sqrt(D) x minimal L2 distance ||r*||")
    ax.set_ylabel("median distance along random directions ||r_v||")
    ax.legend()
    return ax


__all__ = [
    "DirectionalResult",
    "NoiseResult",
    "SqrtDResult",
    "directional_distance",
    "linear_sqrt_d_constants",
    "noise_error_rate",
    "plot_noise",
    "plot_sqrt_d",
    "random_unit_directions",
    "sqrt_d_law",
]
