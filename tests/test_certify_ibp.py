"""Interval bound propagation: exact for one affine layer, sound (contains every point of the ball) for deep nets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlens import Classifier, ConfigError
from robustlens.certify import interval_bounds
from robustlens.norms import lp_norm, random_in_ball
from robustlens.seeding import SampleRNG


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in module.parameters():
            prm.copy_(torch.randn(prm.shape, generator=g) * 0.5)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module.eval()


@pytest.mark.parametrize("p", [float("inf"), 2.0, 1.0])
def test_single_affine_layer_bounds_are_exact_and_attained(p: float):
    lin = _seeded(nn.Linear(6, 4))
    x = torch.rand(3, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float32).double()
    lin = lin.double()
    eps = 0.07
    b = interval_bounds(lin, x, eps, p)
    w = lin.weight  # (4, 6)
    q = {float("inf"): 1.0, 2.0: 2.0, 1.0: float("inf")}[p]
    radius = eps * torch.linalg.vector_norm(w, ord=q, dim=1)
    torch.testing.assert_close(b.lower, lin(x) - radius, rtol=0, atol=1e-12)
    torch.testing.assert_close(b.upper, lin(x) + radius, rtol=0, atol=1e-12)
    # the maximiser of each output over the ball attains the upper bound (steepest direction of w_j)
    for j in range(4):
        if p == float("inf"):
            d = eps * w[j].sign()
        elif p == 2:
            d = eps * w[j] / w[j].norm()
        else:
            d = torch.zeros(6, dtype=torch.float64)
            k = w[j].abs().argmax()
            d[k] = eps * w[j, k].sign()
        torch.testing.assert_close(lin(x + d)[:, j], b.upper[:, j], rtol=0, atol=1e-12)


def _deep_net() -> nn.Module:
    return _seeded(nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(1), nn.Dropout(0.5),
        nn.Flatten(), nn.Linear(4 * 2 * 2, 8), nn.ReLU(), nn.Linear(8, 3),
    ))


@pytest.mark.parametrize("eps", [0.002, 0.05])
@pytest.mark.parametrize("p", ["inf", 2, 1])
def test_bounds_contain_outputs_of_random_points_in_the_ball(p, eps: float):
    net = _deep_net()
    clf = Classifier(net, mean=[0.4, 0.6], std=[0.3, 0.5])
    x = torch.rand(4, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    y = clf.predict(x)
    b = interval_bounds(clf, x, eps, p, y=y)
    assert bool((b.lower <= b.upper).all())
    pn = {"inf": float("inf"), 2: 2.0, 1: 1.0}[p]
    reps = 150
    xs = x.repeat(reps, 1, 1, 1)
    delta = random_in_ball(xs, pn, eps, SampleRNG(0, n=xs.shape[0]))
    # include the ball's surface: scale the random points out to the sphere
    delta = torch.cat([delta, delta * (eps / lp_norm(delta, pn).clamp_min(1e-12)).view(-1, 1, 1, 1)])
    pts = (torch.cat([xs, xs]) + delta)
    if pn == float("inf"):
        pts = pts.clamp(0, 1)  # the classifier's bounds are part of the threat model for the box
    with torch.no_grad():
        z = clf.logits(pts, validate=False).view(2 * reps, 4, 3)
    tol = 1e-5
    assert bool((z >= b.lower[None] - tol).all()) and bool((z <= b.upper[None] + tol).all())
    margins = z.gather(2, y.view(1, 4, 1).expand(2 * reps, 4, 1)) - z  # z_y - z_k
    bound = b.margin_lower.masked_fill(torch.isinf(b.margin_lower), float("-inf"))  # k = y carries +inf
    assert bool((margins >= bound[None] - tol).all())
    # a certified sample keeps its label at every sampled point
    keep = b.certified
    assert int(keep.sum()) == (3 if eps < 0.01 else 0)  # small balls certify 3 of 4 samples, large ones none
    assert bool((z.argmax(2)[:, keep] == y[keep]).all())


def test_certificate_shrinks_with_eps_and_is_tight_for_a_linear_model():
    lin = _seeded(nn.Linear(5, 2), seed=3)
    x = torch.rand(20, 5, generator=torch.Generator().manual_seed(4))
    y = lin(x).argmax(1)
    w = lin.weight[0] - lin.weight[1]
    dist = (lin(x)[:, 0] - lin(x)[:, 1]).abs() / w.norm()  # exact L2 distance to the boundary
    for e in (0.01, 0.1, 0.3):
        cert = interval_bounds(lin, x, e, 2, y=y).certified
        assert torch.equal(cert, dist > e)  # with one linear layer the L2 certificate is exact


def test_unsupported_layers_and_settings_are_refused():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)

        def forward(self, x):
            return self.a(x) * self.b(x)

    with pytest.raises(ConfigError, match="product or quotient of two values that depend on the input"):
        interval_bounds(Odd(), torch.rand(1, 2), 0.1)
    with pytest.raises(ConfigError, match="eps must be a finite number >= 0"):
        interval_bounds(nn.Linear(2, 2), torch.rand(1, 2), -0.1)
    with pytest.raises(ConfigError, match="unknown norm"):
        interval_bounds(nn.Linear(2, 2), torch.rand(1, 2), 0.1, "l3")
    bn = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)).train()
    with pytest.raises(ConfigError, match="eval mode"):
        interval_bounds(bn, torch.rand(1, 1, 2, 2), 0.1)
