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


@pytest.mark.parametrize("c", [2, 5])
def test_adaptive_section_equals_dense_labels_on_affine_model(c: int) -> None:
    """Affine regions are convex, so every cell a boundary crosses has disagreeing corners: the quadtree finds all."""
    _, clf, x = _setup(c)
    for res in (41, 101, (37, 23)):
        kw = dict(directions=("adversarial", "random"), resolution=res, extent=4.0, progress=False)
        dense = cross_section(clf, x, **kw)
        adapt = cross_section(clf, x, refine="adaptive", **kw)
        assert dense.evaluated is None and dense.evaluated_fraction == 1.0
        assert torch.equal(adapt.labels, dense.labels)
        ev = adapt.evaluated
        assert ev is not None and ev.shape == dense.labels.shape and ev.dtype == torch.bool
        assert bool(ev[0, 0] and ev[-1, -1] and ev[::8, ::8].all())  # the coarse sub-grid
        assert adapt.evaluated_fraction < 0.25
        assert torch.allclose(adapt.margins[ev], dense.margins[ev], atol=1e-12)
        # filled margins are bilinear between a cell's corners: exact for two classes (one linear logit difference)
        assert bool(((adapt.margins > 0) == (adapt.labels == adapt.clean_label)).all())
        if c == 2:
            assert torch.allclose(adapt.margins, dense.margins, atol=1e-9)
        for k, v in dense.axis_distance.items():
            assert adapt.axis_distance[k] == pytest.approx(v, rel=1e-3)
        assert adapt.forward_passes < 0.3 * dense.forward_passes


def _trained_cnn() -> Classifier:
    from models import TinyCNN

    from robustlens.data import load_dataset

    data = load_dataset("mnist-embedded", "train")
    x, y = data.x[:2000], data.y[:2000]
    net = TinyCNN(num_classes=10, seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0], 50):
            b = perm[i:i + 50]
            loss = torch.nn.functional.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return Classifier(net, bounds=(0.0, 1.0))


def test_adaptive_section_agrees_with_dense_on_a_trained_cnn() -> None:
    from robustlens.data import load_dataset

    clf = _trained_cnn()
    x = load_dataset("mnist-embedded", "test").x
    cases = [(x[2], ("gradient", "random"), 40.0), (x[0], ("adversarial", "random"), 10.0)]
    agree, evaluated, classes = [], [], []
    for xi, dirs, ext in cases:
        kw = dict(directions=dirs, resolution=81, extent=ext, batch_size=1024, progress=False)
        dense = cross_section(clf, xi, **kw)
        adapt = cross_section(clf, xi, refine="adaptive", **kw)
        agree.append(float((dense.labels == adapt.labels).double().mean()))
        evaluated.append(adapt.evaluated_fraction)
        classes.append(int(dense.labels.unique().numel()))
    assert max(classes) >= 3  # the planes cross several decision regions
    assert min(agree) >= 0.995, agree
    assert max(evaluated) < 0.2, evaluated


def test_adaptive_section_options_are_checked() -> None:
    _, clf, x = _setup(3)
    with pytest.raises(ConfigError, match="refine"):
        cross_section(clf, x, directions=("random", "random"), refine="sparse", progress=False)
    with pytest.raises(ConfigError, match="power of two"):
        cross_section(clf, x, directions=("random", "random"), refine="adaptive", coarse=6, progress=False)
