"""Curvature analyses against dense autograd references and closed forms (eq. 15-16)."""

from __future__ import annotations

import pytest
import torch
from models import Affine
from torch import nn

from robustlens import Classifier
from robustlens.geometry import (
    curvature_profile,
    gradient_alignment,
    hessian_eigenpairs,
    input_hessian,
    taylor_error,
)

D = 64


class Quadratic(nn.Module):
    """Logits z_k = x^T A_k x / 2 + w_k^T x: the logits' input Hessians are the fixed A_k."""

    def __init__(self, d: int = D, c: int = 3, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(c, d, d, generator=g, dtype=torch.float64) / d
        self.A = nn.Parameter(a + a.transpose(1, 2))
        self.w = nn.Parameter(torch.randn(c, d, generator=g, dtype=torch.float64) / d**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("nd,kde,ne->nk", x, self.A, x) + x @ self.w.T


def smooth_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 32), nn.Tanh(), nn.Linear(32, 32), nn.Softplus(), nn.Linear(32, 10)).double()


def _clf(model: nn.Module) -> Classifier:
    return Classifier(model, bounds=(-10.0, 10.0))


def _dense_reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    def loss(xi: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(xi[None]), y[None])

    return torch.autograd.functional.hessian(loss, x)


def _inputs(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("make", [Quadratic, smooth_net])
def test_lanczos_matches_dense_autograd_hessian(make) -> None:
    model = make()
    clf = _clf(model)
    x = _inputs()
    y = torch.tensor([0, 1, 2])
    spec = hessian_eigenpairs(clf, x, y, k=5, which="both", method="lanczos", batch_size=2, progress=False)
    assert spec.method == "lanczos" and spec.hvps > 0
    for i in range(x.shape[0]):
        ref = torch.linalg.eigvalsh(_dense_reference(model, x[i], y[i]))  # ascending
        scale = ref.abs().max()
        assert torch.allclose(spec.top_values[i], ref.flip(0)[:5], rtol=0, atol=1e-4 * scale)
        assert torch.allclose(spec.bottom_values[i], ref[:5], rtol=0, atol=1e-4 * scale)
        # eigenvectors: H u = lambda u
        h = _dense_reference(model, x[i], y[i])
        u = spec.top_vectors[i, 0]
        assert torch.allclose(h @ u, spec.top_values[i, 0] * u, atol=1e-5 * scale)


def test_dense_path_matches_autograd_and_profile_is_sorted() -> None:
    model = smooth_net(3)
    clf = _clf(model)
    x, y = _inputs(2), torch.tensor([4, 7])
    h = input_hessian(clf, x, y)
    for i in range(2):
        assert torch.allclose(h[i], _dense_reference(model, x[i], y[i]), atol=1e-10)
    spec = hessian_eigenpairs(clf, x, y, k=3, method="dense", progress=False)
    prof = curvature_profile(spec)
    assert prof.shape == (2, D)
    assert bool((prof[:, :-1] >= prof[:, 1:]).all())
    assert torch.allclose(spec.top_values, prof[:, :3])


def test_softmax_ce_of_affine_model_has_closed_form_hessian() -> None:
    model = Affine(D, 5, seed=2).double()
    clf = _clf(model)
    x = _inputs(3, seed=5)
    y = torch.tensor([0, 3, 4])
    W = model.W
    h = input_hessian(clf, x, y)
    spec = hessian_eigenpairs(clf, x, y, k=2, which="top", method="lanczos", progress=False)
    for i in range(3):
        p = torch.softmax(model(x[i : i + 1]), 1)[0].detach()
        closed = W.T @ (torch.diag(p) - torch.outer(p, p)) @ W
        assert torch.allclose(h[i], closed, atol=1e-12)
        ev = torch.linalg.eigvalsh(closed).flip(0)
        assert torch.allclose(spec.top_values[i], ev[:2], rtol=1e-6)


def test_lanczos_is_seeded_and_batch_independent() -> None:
    clf = _clf(smooth_net(1))
    x, y = _inputs(3, seed=9), torch.tensor([1, 2, 3])
    a = hessian_eigenpairs(clf, x, y, k=3, which="top", method="lanczos", batch_size=3, seed=4, progress=False)
    b = hessian_eigenpairs(clf, x, y, k=3, which="top", method="lanczos", batch_size=1, seed=4, progress=False)
    assert torch.allclose(a.top_values, b.top_values, rtol=1e-8)


def test_taylor_error_is_zero_for_quadratic_loss_and_alignment_is_exact_for_linear() -> None:
    model = Quadratic(seed=4)
    clf = _clf(model)
    x = _inputs(3, seed=2)
    y = torch.tensor([0, 1, 2])

    def quad_loss(z: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
        return z.gather(1, yy[:, None]).squeeze(1)  # a logit of a quadratic model: exactly quadratic in x

    r = 0.3 * _inputs(3, seed=3)
    t = taylor_error(clf, x, y, r, loss=quad_loss)
    assert float(t.second_error.max()) < 1e-9
    assert float(t.first_error.max()) > 1e-3  # the quadratic term is not negligible at this radius

    # an affine binary model: r* is along w, as is the gradient of the CE loss
    aff = Affine(D, 2, seed=1).double()
    clf2 = _clf(aff)
    z = aff(x).detach()
    pred = z.argmax(1)
    w = aff.W[1] - aff.W[0]
    f = (z[:, 1] - z[:, 0])
    rstar = -(f / w.dot(w))[:, None] * w[None]
    al = gradient_alignment(clf2, x, pred, rstar)
    assert torch.allclose(al.cosine, torch.ones(3, dtype=torch.float64), atol=1e-10)
