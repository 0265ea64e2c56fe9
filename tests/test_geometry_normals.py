"""Boundary normals: SVD rank, principal angles, transferability and curvature overlap against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from models import Affine
from torch import nn

from robustlens import Classifier
from robustlens.attacks.deepfool import DeepFool
from robustlens.attacks.fgsm import FGSM
from robustlens.errors import ConfigError, InputError
from robustlens.geometry import hessian_eigenpairs
from robustlens.geometry.normals import (
    NormalSpectrum,
    NormalsResult,
    SubspaceComparison,
    TransferResult,
    collect_normals,
    compare_subspaces,
    curvature_overlap,
    normal_spectrum,
    plot_principal_angles,
    plot_singular_values,
    principal_angles,
    transferability_matrix,
)

D = 16


def _affine(c: int, seed: int = 0) -> tuple[Affine, Classifier]:
    model = Affine(D, c, seed=seed).double()
    return model, Classifier(model, bounds=(-10.0, 10.0))


def _x(n: int = 24, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_binary_affine_normals_have_rank_one_along_w() -> None:
    model, clf = _affine(2)
    res = collect_normals(clf, _x(), batch_size=7, progress=False)
    assert bool(res.success.all())
    spec = normal_spectrum(res)
    w = model.W[1] - model.W[0]
    assert spec.k50 == spec.k90 == spec.k99 == 1
    assert spec.energy[0] == pytest.approx(1.0, abs=1e-6)
    assert float(spec.singular_values[1]) < 1e-6 * float(spec.singular_values[0])
    assert abs(float(spec.basis[:, 0] @ w / w.norm())) == pytest.approx(1.0, abs=1e-9)
    # each normal is +-(w1 - w0)/||w1 - w0|| and its norm is the distance |f(x)| / ||w||
    z = _x() @ model.W.T + model.b
    dist = (z[:, 1] - z[:, 0]).abs() / w.norm()
    assert torch.allclose(res.norms, 1.02 * dist, rtol=1e-6)


def test_multiclass_affine_normals_live_in_the_row_space_of_w() -> None:
    c = 4
    model, clf = _affine(c)
    spec = normal_spectrum(collect_normals(clf, _x(40), progress=False))
    # the normals of 40 points span exactly the c - 1 directions w_i - w_j: c - 1 non-zero singular values, all
    # the energy in the first c - 1 of them
    sv = spec.singular_values
    assert int((sv > 1e-6 * sv[0]).sum()) == c - 1
    assert spec.k99 == c - 1 and spec.energy[c - 2] == pytest.approx(1.0, abs=1e-6)
    # the normal subspace is inside span{w_i - w_j}: all principal angles with it are 0
    diffs = (model.W[1:] - model.W[0]).T
    ang = principal_angles(spec.subspace(spec.k99), diffs)
    assert float(ang.max()) < 1e-6
    # randomized truncated SVD agrees with the exact one on the top directions, and is seeded
    a = normal_spectrum(collect_normals(clf, _x(40), progress=False), rank=2, seed=3)
    b = normal_spectrum(collect_normals(clf, _x(40), progress=False), rank=2, seed=3)
    assert a.method == "randomized" and torch.equal(a.singular_values, b.singular_values)
    assert torch.allclose(a.singular_values, spec.singular_values[:2], rtol=1e-5)


def test_principal_angles_identical_orthogonal_and_random() -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64)).Q
    a, comp = q[:, :6], q[:, 6:]
    assert float(principal_angles(a, a @ torch.randn(6, 6, generator=g, dtype=torch.float64)).max()) < 1e-7
    perp = principal_angles(a, comp[:, :4])
    assert perp.shape == (4,) and torch.allclose(perp, torch.full((4,), math.pi / 2, dtype=torch.float64), atol=1e-10)
    # a known angle: span{e1} vs span{cos t e1 + sin t e2}
    t = 0.3
    e = torch.eye(30, dtype=torch.float64)
    assert float(principal_angles(e[:, :1], (math.cos(t) * e[:, 0] + math.sin(t) * e[:, 1])[:, None])) == (
        pytest.approx(t, abs=1e-12))
    cmp = compare_subspaces(a, a, n_random=50, seed=1)
    assert cmp.overlap == pytest.approx(1.0) and cmp.dims == (6, 6, 30)
    assert cmp.random_overlap == pytest.approx(6 / 30, abs=3 * cmp.random_overlap_std / math.sqrt(50) + 0.01)
    assert torch.equal(compare_subspaces(a, comp, n_random=3, seed=1).random_angles,
                       compare_subspaces(a, comp, n_random=3, seed=1).random_angles)
    assert compare_subspaces(a, comp, n_random=0).overlap == pytest.approx(0.0, abs=1e-20)


def test_transferability_matrix_on_affine_models() -> None:
    x = _x(30)
    models = {name: _affine(3, seed=s)[1] for name, s in (("a", 0), ("b", 1), ("c", 2))}
    copy_a = Classifier(Affine(D, 3, seed=0).double(), bounds=(-10.0, 10.0))
    models["a_copy"] = copy_a
    y = models["a"].predict(x)
    res = transferability_matrix(models, (x, y), batch_size=11, progress=False)
    assert torch.equal(res.fooling.diagonal(), torch.ones(4, dtype=torch.float64))  # DeepFool always succeeds
    assert float(res.fooling[0, 3]) == 1.0 and float(res.fooling[3, 0]) == 1.0  # identical models
    # every entry equals a direct evaluation of the source's DeepFool examples on the target
    names = list(models)
    for i, src in enumerate(names):
        pert = DeepFool(norm=2)(models[src], x, y).perturbation
        for j, dst in enumerate(names):
            both = (models[src].predict(x) == y) & (models[dst].predict(x) == y)
            fooled = models[dst].predict(models[dst].clip(x + pert)) != y
            assert int(res.counts[i, j]) == int(both.sum())
            assert float(res.fooling[i, j]) == pytest.approx(float((fooled & both).sum() / both.sum()))
    # minimal perturbations transfer to different affine models less than to themselves
    assert float(res.fooling[0, 1]) < 1.0
    # scaling the perturbations can only raise transfer on affine models (the rays stay on the far side)
    big = transferability_matrix(models, (x, y), scale=3.0, progress=False)
    assert bool((big.fooling >= res.fooling - 1e-12).all())
    with pytest.raises(InputError, match="labels"):
        transferability_matrix(models, x, progress=False)


class Quadratic(nn.Module):
    """z_0 = x^T A x / 2 with a planted A, z_1 = 0: the loss z_0 has input Hessian A exactly."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z0 = 0.5 * torch.einsum("nd,de,ne->n", x, self.A, x)
        return torch.stack([z0, torch.zeros_like(z0)], 1)


def _logit0(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return z[:, 0]


def test_curvature_overlap_with_a_known_hessian() -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64)).Q
    lam = torch.linspace(5.0, -1.0, D, dtype=torch.float64)
    lam[-1] = -20.0  # the most curved direction in absolute value is the bottom one
    clf = Classifier(Quadratic(u @ torch.diag(lam) @ u.T), bounds=(-10.0, 10.0))
    x = torch.randn(3, D, generator=g, dtype=torch.float64)
    normals = torch.stack([
        math.sqrt(0.7) * u[:, 0] + math.sqrt(0.3) * u[:, -1],
        3.0 * u[:, 1],
        u[:, -1],
    ])
    res = curvature_overlap(clf, x, normals=normals, ks=(1, 2, 3), loss=_logit0)
    expected = torch.tensor([[0.7, 0.7, 0.7], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(res.energy, expected, atol=1e-9)
    assert torch.allclose(res.baseline, torch.tensor([1, 2, 3], dtype=torch.float64) / D)
    assert torch.allclose(res.eigenvalues[0], lam[:3], atol=1e-9)
    spec = hessian_eigenpairs(clf, x, k=3, which="both", loss=_logit0, progress=False)
    ab = curvature_overlap(clf, x, normals=normals, ks=(1, 2), spectrum=spec, which="abs")
    assert torch.allclose(ab.energy, torch.tensor([[0.3, 1.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64),
                          atol=1e-9)
    assert float(ab.eigenvalues[0, 0]) == pytest.approx(-20.0)
    with pytest.raises(ConfigError, match="eigenvectors"):
        curvature_overlap(clf, x, normals=normals, ks=(5,), spectrum=spec)


def test_curvature_overlap_default_normals_of_a_binary_affine_model() -> None:
    """CE of an affine model: H = p(1-p) (w1-w0)(w1-w0)^T, whose top eigenvector is the DeepFool normal."""
    _, clf = _affine(2)
    res = curvature_overlap(clf, _x(5), ks=(1, 3))
    assert torch.allclose(res.energy, torch.ones(5, 2, dtype=torch.float64), atol=1e-6)
    assert res.ratio[0] == pytest.approx(D, rel=1e-6)
    y = clf.predict(_x(5))
    y[0] = 1 - y[0]  # misclassified: no normal, nan energy, left out of the mean
    res = curvature_overlap(clf, _x(5), y, ks=(1,))
    assert bool(res.energy[0].isnan().all()) and float(res.mean_energy[0]) == pytest.approx(1.0, abs=1e-6)


def test_collect_normals_is_deterministic_resumable_and_serializes(tmp_path) -> None:
    _, clf = _affine(3)
    x = _x(10)
    a = collect_normals(clf, x, batch_size=4, seed=2, progress=False)
    b = collect_normals(clf, x, batch_size=10, seed=2, progress=False)
    assert torch.allclose(a.perturbations, b.perturbations, atol=1e-12) and a.input_shape == [D]
    c = collect_normals(clf, x, batch_size=4, state_dir=tmp_path / "n", progress=False)
    d = collect_normals(clf, x, batch_size=4, state_dir=tmp_path / "n", resume=True, progress=False)
    assert torch.equal(c.perturbations, d.perturbations)
    back = NormalsResult.load(a.save(tmp_path / "normals.json"))
    assert torch.equal(back.perturbations, a.perturbations)
    spec = normal_spectrum(a)
    assert torch.equal(NormalSpectrum.load(spec.save(tmp_path / "spec.json")).basis, spec.basis)
    # misclassified inputs (zero perturbation, counted as successes) carry no normal and are left out
    y = clf.predict(x)
    y[:3] = (y[:3] + 1) % 3
    wrong = collect_normals(clf, (x, y), progress=False)
    assert bool(wrong.success.all()) and wrong.normals().shape == (7, D)
    assert normal_spectrum(wrong).energy[-1] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ConfigError, match="minimal-norm L2"):
        collect_normals(clf, x, attack=FGSM(norm=2, eps=0.1), progress=False)
    with pytest.raises(InputError, match="no successful"):
        normal_spectrum(torch.zeros(3, D))


def test_plots_draw_the_computed_values(tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    _, clf = _affine(4)
    spec = normal_spectrum(collect_normals(clf, _x(20), progress=False))
    ax = plot_singular_values({"affine": spec})
    y = ax.get_lines()[0].get_ydata()
    assert np.allclose(y, (spec.singular_values / spec.singular_values[0]).numpy())
    ax = plot_singular_values(spec, energy=True)
    assert np.allclose(ax.get_lines()[0].get_ydata(), spec.energy.numpy())
    q = torch.linalg.qr(torch.randn(20, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))).Q
    cmp = compare_subspaces(q[:, :3], q[:, 2:], n_random=5)
    ax = plot_principal_angles({"q": cmp})
    assert np.allclose(ax.get_lines()[0].get_ydata(), np.degrees(cmp.angles.numpy()))
    assert isinstance(SubspaceComparison.load(cmp.save(tmp_path / "c.json")), SubspaceComparison)
    assert TransferResult.kind == "result"
