from __future__ import annotations

import pytest
import torch
from scipy.optimize import minimize

from robustlens.errors import ConfigError
from robustlens.norms import (
    INF,
    dual,
    lp_norm,
    minimal_linear_step,
    parse_norm,
    project,
    random_in_ball,
    steepest_direction,
)
from robustlens.seeding import SampleRNG


@pytest.mark.parametrize("p", [1.0, 2.0, INF, 3.0])
def test_minimal_linear_step_reaches_hyperplane_at_dual_norm_distance(p):
    g = torch.Generator().manual_seed(0)
    w, f = torch.randn(5, 40, generator=g), torch.rand(5, generator=g) + 0.1
    r = minimal_linear_step(w, f, p)
    torch.testing.assert_close((w * r).sum(1), f)
    torch.testing.assert_close(lp_norm(r, p), f / lp_norm(w, dual(p)))


@pytest.mark.parametrize("p", [1.0, 2.0, INF])
def test_projection_lands_in_ball_and_is_nearest(p):
    g = torch.Generator().manual_seed(1)
    d = torch.randn(3, 8, generator=g) * 2
    proj = project(d, p, 0.7)
    assert bool((lp_norm(proj, p) <= 0.7 + 1e-5).all())
    for i in range(3):  # compare with a generic constrained solver
        x0 = d[i].double().numpy()

        def radius_left(v):
            return 0.7 - (abs(v).max() if p == INF else (abs(v) ** p).sum() ** (1 / p))

        def sq_dist(v, x0=x0):
            return ((v - x0) ** 2).sum()

        cons = {"type": "ineq", "fun": radius_left}
        best = minimize(sq_dist, proj[i].double().numpy() * 0.9, constraints=[cons])
        assert ((proj[i].double().numpy() - x0) ** 2).sum() <= best.fun + 1e-4


@pytest.mark.parametrize("p", [1.0, 2.0, INF])
def test_random_in_ball_is_inside_and_independent_of_batching(p):
    like = torch.zeros(6, 2, 3, 3)
    a = random_in_ball(like, p, 0.5, SampleRNG(3, n=6))
    b = random_in_ball(like[:2], p, 0.5, SampleRNG(3, [4, 5]))
    assert bool((lp_norm(a, p) <= 0.5 + 1e-6).all())
    torch.testing.assert_close(a[4:], b)


def test_steepest_direction_maximises_inner_product():
    g = torch.randn(2, 10)
    for p in (1.0, 2.0, INF):
        d = steepest_direction(g, p)
        torch.testing.assert_close(lp_norm(d, p), torch.ones(2))
        torch.testing.assert_close((g * d).sum(1), lp_norm(g, dual(p)))


@pytest.mark.parametrize("bad", ["l3", 0.5, "fro", float("nan")])
def test_unknown_norm(bad):
    with pytest.raises(ConfigError, match="norm"):
        parse_norm(bad)
