"""Subspace margins (eq. 18, Fig. 8) against the affine closed form; the DCT bases against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from models import Affine, TinyCNN

from robustlens import Classifier
from robustlens.errors import ConfigError, InputError
from robustlens.geometry.subspaces import (
    Subspace,
    SubspaceMarginResult,
    dct2,
    dct_basis,
    dct_matrix,
    diagonal_dct_subspaces,
    idct2,
    margin_quantiles,
    pixel_block_subspaces,
    plot_margin_profile,
    random_subspaces,
    subspace_margins,
)

SHAPE = (2, 6, 6)
D = 72


def _affine_clf(seed: int = 0) -> tuple[Affine, Classifier]:
    model = Affine(D, 2, seed=seed, input_shape=SHAPE).double()
    return model, Classifier(model, bounds=(-10.0, 10.0), input_shape=SHAPE)


def _x(n: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_dct_matrix_is_orthonormal_and_equals_scipy() -> None:
    for n in (1, 5, 8, 28):
        c = dct_matrix(n)
        assert torch.allclose(c @ c.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
        assert np.allclose(c.numpy(), scipy.fft.dct(np.eye(n), axis=0, norm="ortho"), atol=1e-12)
    img = torch.rand(3, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = scipy.fft.dctn(img.numpy(), axes=(-2, -1), norm="ortho")
    assert np.allclose(dct2(img).numpy(), ref, atol=1e-12)
    assert torch.allclose(idct2(dct2(img)), img, atol=1e-12)


def test_dct_basis_columns_are_scipy_inverse_dct_of_unit_coefficients() -> None:
    shape = (3, 6, 5)
    basis = dct_basis(shape, [1, 2], [0, 4], channels=[0, 2], dtype=torch.float64)
    assert basis.shape == (90, 8)
    assert torch.allclose(basis.T @ basis, torch.eye(8, dtype=torch.float64), atol=1e-12)
    # every column's DCT (scipy, orthonormal) is a single unit coefficient at the advertised place
    coef = scipy.fft.dctn(basis.T.reshape(8, *shape).numpy(), axes=(-2, -1), norm="ortho")
    expected = [(c, u, v) for c in (0, 2) for u in (1, 2) for v in (0, 4)]
    for j, (c, u, v) in enumerate(expected):
        unit = np.zeros(shape)
        unit[c, u, v] = 1.0
        assert np.allclose(coef[j], unit, atol=1e-12)


def test_full_diagonal_dct_subspaces_cover_the_diagonal_blocks() -> None:
    subs = diagonal_dct_subspaces((1, 28, 28), block=8, stride=4)
    assert [s.position for s in subs] == [0, 4, 8, 12, 16, 20]
    assert subs[-1].name == "dct[20:28]" and all(s.dim == 64 and s.kind == "dct" for s in subs)
    # with stride = block the last block is still placed at the highest frequencies
    subs = diagonal_dct_subspaces((3, 10, 10), block=4, stride=4)
    assert [s.position for s in subs] == [0, 4, 6] and subs[0].dim == 48
    # block [0:K) of the DCT holds exactly the low-pass images: a constant image lies inside dct[0:4]
    b = subs[0].basis.double()
    const = torch.ones(300, dtype=torch.float64)
    assert torch.allclose(b @ (b.T @ const), const, atol=1e-10)
    assert float((subs[-1].basis.double().T @ const).abs().max()) < 1e-10


@pytest.mark.parametrize("channels", [None, [1], [0, 2]])
def test_separable_dct_projector_equals_the_dense_basis_product(channels) -> None:
    """The margins project with P_H X P_W per channel instead of B B^T: the same operator, without the D x k basis."""
    for shape in [(3, 8, 8), (3, 6, 10)]:
        subs = diagonal_dct_subspaces(shape, block=4, stride=2, channels=channels, dtype=torch.float64)
        x = torch.randn(5, int(np.prod(shape)), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        for s in subs:
            assert s.dct is not None and s.dct.shape == shape
            proj = s.projector(dtype=torch.float64)
            b = s.basis
            assert torch.allclose(proj(x), (x @ b) @ b.T, atol=1e-12)
            assert torch.allclose(proj(proj(x)), proj(x), atol=1e-12)
    assert pixel_block_subspaces(SHAPE, block=3)[0].projector() is None


def test_pixel_and_random_subspaces_are_orthonormal_and_seeded() -> None:
    px = pixel_block_subspaces(SHAPE, block=3)
    assert len(px) == 4 and px[0].dim == 18
    assert torch.equal(px[0].basis.T @ px[0].basis, torch.eye(18))
    assert float((px[0].basis.T @ px[1].basis).abs().max()) == 0.0  # disjoint patches
    r1, r2 = random_subspaces(D, 5, 2, seed=3), random_subspaces(D, 5, 2, seed=3)
    assert torch.equal(r1[1].basis, r2[1].basis) and not torch.equal(r1[0].basis, r1[1].basis)
    assert torch.allclose(r1[0].basis.T @ r1[0].basis, torch.eye(5), atol=1e-5)


@pytest.mark.parametrize("kind", ["dct", "pixel", "random"])
def test_affine_subspace_margin_is_exact(kind: str) -> None:
    """Binary affine model: the margin inside S is |f(x)| / ||P_S w|| with w = w_y - w_other (eq. 18)."""
    model, clf = _affine_clf()
    x = _x()
    if kind == "dct":
        subs = diagonal_dct_subspaces(SHAPE, block=3, stride=1, dtype=torch.float64)
    elif kind == "pixel":
        subs = pixel_block_subspaces(SHAPE, block=3, dtype=torch.float64)
    else:
        subs = random_subspaces(D, 7, 3, seed=0, dtype=torch.float64)
    o = 1e-5  # overshoot 0 may stop exactly on the boundary (a tie); a tiny one crosses it
    res = subspace_margins(clf, x, subs, overshoot=o, max_iter=5, batch_size=5, progress=False)
    z = x.flatten(1) @ model.W.T + model.b
    pred = z.argmax(1)
    w = model.W[pred] - model.W[1 - pred]  # (N, D)
    f = (z.gather(1, pred[:, None]) - z.gather(1, (1 - pred)[:, None])).squeeze(1)
    for j, s in enumerate(subs):
        pw = (w @ s.basis) @ s.basis.T
        exact = f / pw.norm(dim=1)
        assert torch.allclose(res.margins[:, j], (1 + o) * exact, rtol=1e-9), (s.name, res.margins[:, j], exact)
    # the overshoot scales the returned perturbation (and hence the margin) by 1 + overshoot
    res2 = subspace_margins(clf, x, subs[:1], overshoot=0.02, max_iter=5, progress=False)
    assert torch.allclose(res2.margins[:, 0], 1.02 / (1 + o) * res.margins[:, 0], rtol=1e-9)
    assert res.queries["backward"] > 0 and res.margins.shape == (12, len(subs))


def test_margin_summary_median_quantiles_and_misclassified_samples() -> None:
    model, clf = _affine_clf()
    x = _x(20)
    pred = clf.predict(x)
    y = pred.clone()
    y[:3] = 1 - y[:3]  # three misclassified samples: margin 0, left out of the summary
    subs = random_subspaces(D, 10, 2, seed=1, dtype=torch.float64)
    res = subspace_margins(clf, (x, y), subs, overshoot=1e-4, progress=False)
    assert torch.equal(res.clean_correct, y == pred)
    assert bool((res.margins[:3] == 0).all())
    ok = res.margins[3:]
    for j in range(2):
        vals = np.sort(ok[:, j].numpy())
        assert float(res.median[j]) == vals[int(np.ceil(0.5 * 17)) - 1]  # inverse empirical CDF
        assert float(res.q_low[j]) <= float(res.median[j]) <= float(res.q_high[j])
    assert torch.equal(res.quantile(0.5), res.median)
    # infinite margins do not turn quantiles into nan
    q = margin_quantiles(torch.tensor([[1.0, float("inf")], [2.0, float("inf")], [3.0, 5.0]]), [0.0, 0.5, 1.0])
    assert q[:, 0].tolist() == [1.0, 2.0, 3.0] and q[:, 1].tolist() == [5.0, float("inf"), float("inf")]


def test_subspace_margins_deterministic_batch_independent_and_serializable(tmp_path) -> None:
    torch.manual_seed(0)
    net = TinyCNN(num_classes=10, seed=0, size=8)
    clf = Classifier(net, bounds=(0, 1), input_shape=(1, 8, 8))
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    subs = diagonal_dct_subspaces((1, 8, 8), block=4, stride=4)
    a = subspace_margins(clf, x, subs, seed=5, batch_size=6, progress=False)
    b = subspace_margins(clf, x, subs, seed=5, batch_size=4, progress=False)
    assert torch.allclose(a.margins, b.margins, rtol=1e-5)
    assert bool(torch.isfinite(a.margins).all()) and bool((a.margins > 0).all())
    # resumable through the runner: a second call with resume reads the checkpoints
    c = subspace_margins(clf, x, subs, seed=5, batch_size=4, state_dir=tmp_path / "m", progress=False)
    d = subspace_margins(clf, x, subs, seed=5, batch_size=4, state_dir=tmp_path / "m", resume=True, progress=False)
    assert torch.equal(c.margins, d.margins) and d.queries["forward"] == 0
    path = a.save(tmp_path / "margins.json")
    back = SubspaceMarginResult.load(path)
    assert torch.equal(back.margins, a.margins) and back.names == a.names


def test_plot_margin_profile_draws_median_line() -> None:
    import matplotlib

    matplotlib.use("Agg")
    _, clf = _affine_clf()
    subs = diagonal_dct_subspaces(SHAPE, block=2, stride=2, dtype=torch.float64)
    res = subspace_margins(clf, _x(8), subs, progress=False)
    ax = plot_margin_profile({"affine": res})
    line = ax.get_lines()[0]
    assert np.allclose(line.get_ydata(), res.median.numpy())
    assert list(line.get_xdata()) == res.positions


def test_errors_are_explicit() -> None:
    _, clf = _affine_clf()
    with pytest.raises(ConfigError, match="orthonormal"):
        subspace_margins(clf, _x(2), {"bad": torch.ones(D, 2)}, progress=False)
    with pytest.raises(InputError, match="rows"):
        subspace_margins(clf, _x(2), random_subspaces(10, 2), progress=False)
    with pytest.raises(ConfigError, match="block"):
        diagonal_dct_subspaces(SHAPE, block=7)
    with pytest.raises(ConfigError, match="image inputs"):
        diagonal_dct_subspaces((5,), block=2)
    with pytest.raises(ConfigError, match="list of Subspace"):
        subspace_margins(clf, _x(2), [], progress=False)
    assert isinstance(Subspace("s", torch.eye(3)[:, :1]).dim, int)
