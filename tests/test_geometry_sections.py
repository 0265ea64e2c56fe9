"""Cross-sections (eq. 6): on an affine classifier every boundary is a straight line at the analytic distance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math

import pytest
import torch
from models import Affine

from robustlens import Classifier
from robustlens.errors import ConfigError
from robustlens.geometry.sections import cross_section, plot_sections, section_directions

D = 20


def _setup(c: int, seed: int = 0):
    model = Affine(D, c, seed=seed).double()
    clf = Classifier(model, bounds=(-50.0, 50.0))
    x = torch.randn(D, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    return model, clf, x


def _analytic_margin(model: Affine, x: torch.Tensor, u: torch.Tensor, a1: torch.Tensor, a2: torch.Tensor):
    """z_c - max_k z_k on the plane, from the closed form of the logits."""
    W, b = model.W, model.b
    z0 = W @ x + b
    c = int(z0.argmax())
    zu1, zu2 = W @ u[0], W @ u[1]
    z = z0[None, None] + a2[:, None, None] * zu2[None, None] + a1[None, :, None] * zu1[None, None]
    other = torch.cat([z[..., :c], z[..., c + 1 :]], -1).amax(-1)
    return z[..., c] - other, c, z0, zu1, zu2


def _ray_distance(z0: torch.Tensor, zu: torch.Tensor, c: int) -> float:
    """Distance along +u to the first class change: min over k of the positive root of (z0_c-z0_k) + t (zu_c-zu_k)."""
    best = math.inf
    for k in range(z0.shape[0]):
        if k == c:
            continue
        slope = float(zu[c] - zu[k])
        if slope < 0:
            best = min(best, float(z0[c] - z0[k]) / -slope)
    return best


@pytest.mark.parametrize("c", [2, 5])
def test_affine_section_boundaries_are_straight_lines_at_analytic_distance(c: int) -> None:
    model, clf, x = _setup(c)
    res = cross_section(clf, x, directions=("adversarial", "random"), resolution=41, extent=4.0, progress=False)
    u = res.directions.reshape(2, D)
    assert torch.allclose(u @ u.T, torch.eye(2, dtype=u.dtype), atol=1e-10)
    m, cc, z0, zu1, zu2 = _analytic_margin(model, x, u, res.alphas1, res.alphas2)
    assert res.clean_label == cc
    assert torch.allclose(res.margins, m, atol=1e-9)
    # the labels flip exactly where the analytic margin changes sign
    assert bool(((res.labels == cc) == (m > 0)).all())
    # binary: the boundary is one straight line; its zero crossings along every row are collinear
    if c == 2:
        a1, a2 = res.alphas1, res.alphas2
        pts = []
        for i in range(len(a2)):
            row = res.margins[i]
            j = torch.nonzero((row[:-1] > 0) != (row[1:] > 0)).flatten()
            for jj in j.tolist():
                t = float(row[jj] / (row[jj] - row[jj + 1]))
                pts.append((float(a1[jj] + t * (a1[jj + 1] - a1[jj])), float(a2[i])))
        assert len(pts) >= 5
        p = torch.tensor(pts, dtype=torch.float64)
        a = torch.stack([p[:, 0], p[:, 1], torch.ones(len(p), dtype=torch.float64)], 1)
        resid = torch.linalg.svdvals(a)[-1]
        assert float(resid) < 1e-8
        # along u1 (the DeepFool normal) the distance is |f| / ||w||: the minimal distance itself
        w = model.W[cc] - model.W[1 - cc]
        f = float(z0[cc] - z0[1 - cc])
        assert res.axis_distance["+u1"] == pytest.approx(f / float(w.norm()), rel=1e-3)
    expected = {
        "+u1": _ray_distance(z0, zu1, cc), "-u1": _ray_distance(z0, -zu1, cc),
        "+u2": _ray_distance(z0, zu2, cc), "-u2": _ray_distance(z0, -zu2, cc),
    }
    for key, val in expected.items():
        got = res.axis_distance[key]
        if val > 4.0:
            assert got == math.inf
        else:
            assert got == pytest.approx(val, rel=1e-3)
    # the loss section is the cross-entropy of the label on the same plane
    pt = x + res.alphas1[3] * u[0] + res.alphas2[7] * u[1]
    ce = torch.nn.functional.cross_entropy(model(pt[None]), torch.tensor([res.label]))
    assert float(res.loss[7, 3]) == pytest.approx(float(ce.detach()), rel=1e-9)


def test_section_directions_seeded_and_gradient_direction() -> None:
    model, clf, x = _setup(3, seed=1)
    u1, _ = section_directions(clf, x, directions=("random", "random"), seed=3)
    u2, _ = section_directions(clf, x, directions=("random", "random"), seed=3)
    u3, _ = section_directions(clf, x, directions=("random", "random"), seed=4)
    assert torch.equal(u1, u2) and not torch.equal(u1, u3)
    ug, names = section_directions(clf, x, directions=("gradient", "random"))
    _, g = clf.loss_and_input_grad(x[None], clf.predict(x[None]))
    assert names == ["gradient", "random"]
    assert float(torch.nn.functional.cosine_similarity(ug[0], g[0], dim=0)) == pytest.approx(1.0, abs=1e-10)
    with pytest.raises(ConfigError):
        section_directions(clf, x, directions=("gradient", "gradient"))
    with pytest.raises(ConfigError):
        section_directions(clf, x, directions=("sideways", "random"))


def test_plot_uses_equal_axis_scales() -> None:
    _, clf, x = _setup(3, seed=2)
    res = cross_section(clf, x, directions=("random", "random"), resolution=(21, 11), extent=(3.0, 1.5),
                        progress=False)
    assert res.labels.shape == (11, 21)
    fig = plot_sections(res)
    for ax in fig.axes[:2]:
        assert ax.get_aspect() == 1.0


def test_one_image_without_batch_dimension_on_a_fresh_classifier() -> None:
    """x[i] of a single-channel batch, (1, 28, 28), is one image, not a batch of one 28x28 input."""
    from robustlens.zoo import create_model

    net = create_model("smallcnn", num_classes=10).eval()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = cross_section(Classifier(net), x[1], directions=("random", "random"), resolution=5, progress=False)
    b = cross_section(Classifier(net), x[1:2], directions=("random", "random"), resolution=5, progress=False)
    assert torch.equal(a.labels, b.labels) and a.labels.shape == (5, 5)
