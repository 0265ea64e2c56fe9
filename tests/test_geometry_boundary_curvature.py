"""Boundary curvature (shape operator of a level set at the DeepFool point) against closed forms."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from models import Affine
from torch import nn

from robustlens import Classifier
from robustlens.geometry import boundary_curvature, hessian_eigenpairs

D = 16


class Sphere(nn.Module):
    """Two classes, z = [(R^2 - ||x - c||^2) / (2R), 0]: class 0 inside the ball of radius R around c.

    The level sets of the logit difference (and of the loss) are spheres around c, so the boundary's principal
    curvatures at a point x_b are all 1 / ||x_b - c|| (1 / R on the boundary itself).
    """

    def __init__(self, d: int = D, radius: float = 0.7, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.radius = radius
        self.c = nn.Parameter(0.1 * torch.randn(d, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r2 = (x.flatten(1) - self.c).pow(2).sum(1)
        z0 = (self.radius**2 - r2) / (2 * self.radius)
        return torch.stack([z0, torch.zeros_like(z0)], 1)


def _clf(model: nn.Module) -> Classifier:
    return Classifier(model, bounds=(-10.0, 10.0))


def _inside(model: Sphere, n: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return model.c.detach() + 0.2 * torch.randn(n, D, generator=g, dtype=torch.float64) / D**0.5


@pytest.mark.parametrize("function", ["ce", "logit-difference"])
def test_sphere_principal_curvatures_are_one_over_radius(function: str) -> None:
    model = Sphere()
    x = _inside(model)
    res = boundary_curvature(_clf(model), x, k=D - 1, which="top", function=function, method="dense")
    assert bool(res.success.all())
    radius = (res.boundary_points - model.c.detach()).norm(dim=1)  # the level set through x_b
    expected = (1.0 / radius)[:, None].expand(-1, D - 1)
    torch.testing.assert_close(res.top_values, expected.double(), rtol=1e-4, atol=0.0)
    torch.testing.assert_close(res.max_abs, 1.0 / radius, rtol=1e-4, atol=0.0)
    assert bool((radius > model.radius).all())  # DeepFool lands outside (its linear steps overshoot a sphere)


class RadialProjection:
    """An exact minimal-L2 "attack" for :class:`Sphere`: x_b = c + (1 + 1e-7) R (x - c) / ||x - c||."""

    name = "radial"

    def __init__(self, model: Sphere) -> None:
        self.model = model

    def __call__(self, clf: Classifier, x: torch.Tensor, y: torch.Tensor) -> SimpleNamespace:
        c = self.model.c.detach()
        u = (x - c) / (x - c).norm(dim=1, keepdim=True)
        xb = c + (1 + 1e-7) * self.model.radius * u
        return SimpleNamespace(adversarial=xb, success=torch.ones(x.shape[0], dtype=torch.bool))


def test_sphere_curvature_on_the_boundary_is_one_over_r() -> None:
    model = Sphere()
    res = boundary_curvature(_clf(model), _inside(model), k=D - 1, which="top", method="dense",
                             attack=RadialProjection(model))
    torch.testing.assert_close(res.top_values, torch.full((4, D - 1), 1.0 / model.radius, dtype=torch.float64),
                               rtol=1e-4, atol=0.0)
    torch.testing.assert_close(res.median, 1.0 / model.radius, rtol=1e-4, atol=0.0)


def test_sphere_lanczos_path_matches() -> None:
    model = Sphere(d=200, radius=1.5)
    g = torch.Generator().manual_seed(3)
    x = model.c.detach() + 0.1 * torch.randn(2, 200, generator=g, dtype=torch.float64) / 200**0.5
    res = boundary_curvature(_clf(model), x, k=3, which="both", method="lanczos", tol=0.0)
    radius = (res.boundary_points - model.c.detach()).norm(dim=1)
    torch.testing.assert_close(res.top_values, (1.0 / radius)[:, None].expand(-1, 3).double(), rtol=1e-4, atol=0.0)
    # the normal's zero eigenvalue is projected out of the Krylov space: the bottom ones are curvatures too
    torch.testing.assert_close(res.bottom_values, (1.0 / radius)[:, None].expand(-1, 3).double(), rtol=1e-4,
                               atol=0.0)


@pytest.mark.parametrize(("c", "function"), [(2, "ce"), (2, "logit-difference"), (5, "logit-difference")])
def test_affine_boundary_is_flat(c: int, function: str) -> None:
    model = Affine(D, c, seed=2).double()
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    res = boundary_curvature(_clf(model), x, k=3, function=function)
    assert bool(res.success.all())
    assert float(res.max_abs.max()) < 1e-8


def test_ce_level_sets_of_a_multiclass_affine_model_are_curved() -> None:
    # documented: with more than two classes the loss's level set is not the (flat) boundary
    model = Affine(D, 5, seed=2).double()
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    res = boundary_curvature(_clf(model), x, k=3, which="top", function="ce")
    assert float(res.top_values.min()) > -1e-10  # J^T (diag p - p p^T) J is positive semi-definite
    assert float(res.max_abs.max()) > 1e-6


def _smooth_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 32), nn.Tanh(), nn.Linear(32, 4)).double()


def test_deterministic_with_seed_and_failed_samples_are_nan() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(200, 32), nn.Tanh(), nn.Linear(32, 4)).double()
    clf = Classifier(model, bounds=(-10.0, 10.0))
    x = torch.randn(3, 200, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    a = boundary_curvature(clf, x, k=2, method="lanczos", seed=7)
    b = boundary_curvature(clf, x, k=2, method="lanczos", seed=7)
    assert torch.equal(a.top_values, b.top_values) and torch.equal(a.bottom_values, b.bottom_values)
    assert a.hvps > 0 and torch.isfinite(a.max_abs).all()
    from robustlens.attacks.deepfool import DeepFool

    c = boundary_curvature(clf, x, k=2, method="lanczos", seed=7, attack=DeepFool(norm=2, max_iter=1,
                                                                                  overshoot=0.0))
    failed = ~c.success
    assert bool(torch.isnan(c.max_abs[failed]).all()) and bool(torch.isinf(c.distance[failed]).all())


def test_boundary_curvature_matches_dense_shape_operator() -> None:
    """On a smooth net the result equals eig(P H P) / ||g|| built from the dense autograd Hessian."""
    model = _smooth_net()
    clf = _clf(model)
    x = torch.randn(2, D, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    res = boundary_curvature(clf, x, k=D - 1, which="top", function="logit-difference", method="dense")
    for i in range(2):
        xb, yi, t = res.boundary_points[i], int(res.labels[i]), int(res.boundary_labels[i])

        def f(v: torch.Tensor, yi: int = yi, t: int = t) -> torch.Tensor:
            z = model(v[None])[0]
            return z[t] - z[yi]

        g = torch.autograd.functional.jacobian(f, xb)
        h = torch.autograd.functional.hessian(f, xb)
        nrm = g / g.norm()
        p = torch.eye(D, dtype=torch.float64) - torch.outer(nrm, nrm)
        ev, vec = torch.linalg.eigh(p @ h @ p / g.norm())
        tangent = (vec.T @ nrm).abs() < 0.5  # the normal is an eigenvector (eigenvalue 0): left out
        ref = torch.sort(ev[tangent], descending=True).values
        torch.testing.assert_close(res.top_values[i], ref, rtol=1e-6, atol=1e-9)


def test_project_hook_lanczos_matches_dense() -> None:
    d = 200
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, 4)).double()
    clf = _clf(model)
    x = torch.randn(2, d, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    u = torch.randn(2, d, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)

    def project(v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return v - (v * u[idx]).sum(1, keepdim=True) * u[idx]

    lz = hessian_eigenpairs(clf, x, k=3, which="top", method="lanczos", tol=0.0, project=project, progress=False)
    dn = hessian_eigenpairs(clf, x, k=3, which="top", method="dense", project=project, progress=False)
    torch.testing.assert_close(lz.top_values, dn.top_values.double(), rtol=1e-6, atol=1e-10)
    plain = hessian_eigenpairs(clf, x, k=3, which="top", method="dense", progress=False)
    assert not torch.allclose(plain.top_values, dn.top_values)
