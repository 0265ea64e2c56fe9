"""Noise robustness (eq. 7, 20, 21) against the closed forms of a binary affine classifier."""

from __future__ import annotations

import math

import pytest
import torch
from models import Affine
from scipy.stats import norm

from robustlens import Classifier
from robustlens.geometry.noise import (
    directional_distance,
    linear_sqrt_d_constants,
    noise_error_rate,
    random_unit_directions,
    sqrt_d_law,
)


def _binary(d: int, seed: int = 0, n: int = 6):
    model = Affine(d, 2, seed=seed).double()
    clf = Classifier(model, bounds=(-1e4, 1e4))
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64) * 0.3
    z = model(x).detach()
    c = z.argmax(1)
    w = model.W[1] - model.W[0]
    f = (z[:, 1] - z[:, 0]).abs()
    return model, clf, x, c, w, f


def test_directional_distance_equals_closed_form() -> None:
    d = 30
    _, clf, x, _, w, f = _binary(d)
    res = directional_distance(clf, x, n_directions=16, max_dist=200.0, seed=5, progress=False)
    v = random_unit_directions(x.shape[0], 16, (d,), seed=5, dtype=torch.float64)
    closed = f[:, None] / (v @ w).abs()
    inside = closed < 200.0
    assert bool(inside.sum() > 50)
    assert torch.allclose(res.distance[inside], closed[inside], rtol=2e-4)
    assert bool(torch.isinf(res.distance[~inside]).all())


def test_sqrt_d_law_has_the_linear_constant() -> None:
    d = 200
    _, clf, x, _, w, f = _binary(d, seed=3, n=6)
    rstar = f / w.norm()
    res = sqrt_d_law(clf, x, adversarial_norm=rstar, n_directions=150, max_dist=1e5, seed=1, progress=False)
    lin = linear_sqrt_d_constants(d)
    assert res.dim == d
    # E[(r*/r_v)^2] = 1/D exactly for a linear classifier; 900 draws estimate it to about 2.5% (one std)
    assert res.rms_constant == pytest.approx(1.0, rel=0.08)
    assert res.median_constant == pytest.approx(lin["median"], rel=0.08)
    assert lin["median"] == pytest.approx(1 / norm.ppf(0.75), rel=0.01)  # the D -> inf limit
    assert res.slope == pytest.approx(lin["median"], rel=0.1)
    assert 0 < res.slope_std < 0.2 * res.slope


def test_noise_error_rate_matches_gaussian_tail() -> None:
    d = 50
    _, clf, x, _, w, f = _binary(d, seed=2, n=4)
    sig = [0.02, 0.1, 0.4]
    res = noise_error_rate(clf, x, sig, n_draws=500, seed=0, batch_size=700, progress=False)
    for j, s in enumerate(sig):
        p = torch.tensor(norm.cdf(-(f / (s * w.norm())).numpy()))
        tol = 4 * torch.sqrt(p * (1 - p) / 500) + 1e-9
        assert bool(((res.per_sample[:, j] - p).abs() <= tol).all()), (res.per_sample[:, j], p)
        assert float(res.ci_low[j]) <= float(res.error_rate[j]) <= float(res.ci_high[j])
    again = noise_error_rate(clf, x, sig, n_draws=500, seed=0, batch_size=97, progress=False)
    assert torch.equal(res.per_sample, again.per_sample)  # same seed, any batching: same numbers
    assert math.isclose(float(res.error_rate[0]), float(res.per_sample[:, 0].mean()))
