"""Minimal-norm attacks (paper eq. 8-9) against closed forms on affine classifiers."""

from __future__ import annotations

import math

import pytest
import torch
from models import Affine, affine_distance

from robustlens.attacks.deepfool import DeepFool
from robustlens.attacks.subspace import SubspaceAttack
from robustlens.classifier import Classifier
from robustlens.errors import ConfigError, InputError
from robustlens.norms import dual, lp_norm

INF = math.inf


def affine_clf(d: int, c: int, seed: int = 0, bounds: tuple[float, float] = (-1e3, 1e3)) -> tuple[Affine, Classifier]:
    m = Affine(d, c, seed=seed)
    return m, Classifier(m, bounds=bounds)


def nearest_hyperplane_is_boundary(m: Affine, x: torch.Tensor, p: float) -> torch.Tensor:
    """Samples whose nearest hyperplane point (pushed 0.1% further) is misclassified: there the hyperplane distance
    is the exact distance to the decision region's boundary (it is only a lower bound elsewhere)."""
    q = dual(p)
    z = x @ m.W.T + m.b
    c = z.argmax(1)
    diffs = m.W[c][:, None, :] - m.W[None, :, :]
    f = z.gather(1, c[:, None]) - z
    wn = lp_norm(diffs.flatten(0, 1), q).view(f.shape)
    dist = (f / wn.clamp_min(1e-12)).scatter(1, c[:, None], INF)
    k = dist.argmin(1)
    from robustlens.norms import minimal_linear_step

    w = m.W[k] - m.W[c]
    r = minimal_linear_step(w, f.gather(1, k[:, None]).squeeze(1) * 1.001, p)
    return (x + r) @ m.W.T + m.b


def assert_walked_to(norm: torch.Tensor, exact: torch.Tensor, slack: float) -> None:
    """The boundary walk returns a point just past the boundary, with a margin between 1e-4 and 2e-4 of the clean
    margin: on an affine model, the exact distance times a factor in [1 + 1e-4, 1 + 2e-4] (up to ``slack``)."""
    ratio = norm / exact - 1
    assert float(ratio.min()) >= 1e-4 - slack, float(ratio.min())
    assert float(ratio.max()) <= 2e-4 + slack, float(ratio.max())


@pytest.mark.parametrize("p", [2, INF, 1, 3])
@pytest.mark.parametrize("d", [2, 100, 3072])
@pytest.mark.parametrize("refine", [0, 3])
def test_deepfool_binary_affine_exact(p: float, d: int, refine: int) -> None:
    # float64: in float32 the cancellation in w.x + b alone reaches 1e-3 relative for some draws at D = 3072
    m, _ = affine_clf(d, 2, seed=d)
    m = m.double()
    clf = Classifier(m, bounds=(-1e3, 1e3))
    x = torch.randn(32, d, dtype=torch.float64)
    res = DeepFool(norm=p, clip=False, refine=refine)(clf, x)
    exact = affine_distance(m, x, dual(p))
    assert bool(res.success.all())
    if refine == 0:  # DeepFool's own iterate: the overshoot of the total perturbation, exactly
        torch.testing.assert_close(res.norm / 1.02, exact, rtol=1e-3, atol=0)
    else:  # the walk trims the overshoot to its margin
        assert_walked_to(res.norm, exact, 1e-6)


@pytest.mark.parametrize("p", [2, INF])
def test_deepfool_multiclass_affine(p: float) -> None:
    m, clf = affine_clf(3072, 10, seed=3)
    x = torch.randn(64, 3072)
    res = DeepFool(norm=p, candidates=None, clip=False, refine=3)(clf, x)
    exact = affine_distance(m, x, dual(p))
    assert bool(res.success.all())
    # never below the nearest hyperplane (a lower bound on the distance) ...
    assert bool((res.norm >= exact * (1 - 1e-4)).all())
    # ... and equal to it (up to the walk's margin) wherever that hyperplane point lies on the region's boundary
    valid = nearest_hyperplane_is_boundary(m, x, p).argmax(1) != (x @ m.W.T + m.b).argmax(1)
    assert valid.float().mean() > 0.8
    # float32 resolves a clean margin below 0.01 (logits of order 1) or a distance below 0.01 (inputs of order 1)
    # only to ~1e-3 relative
    z = x @ m.W.T + m.b
    top2 = z.topk(2, dim=1).values
    resolved = valid & (top2[:, 0] - top2[:, 1] >= 0.01) & (exact >= 0.01)
    assert resolved.float().mean() > 0.3
    assert_walked_to(res.norm[resolved], exact[resolved], 5e-5)
    torch.testing.assert_close(res.norm[valid], exact[valid], rtol=3e-3, atol=0)


def test_deepfool_finished_samples_cost_nothing() -> None:
    m, clf = affine_clf(50, 2, seed=1)
    x = torch.randn(40, 50)
    y = clf.predict(x)
    y[:15] = 1 - y[:15]  # 15 samples already misclassified: adversarial at the start
    res = DeepFool(norm=2, clip=False, refine=0)(clf, x, y)
    assert bool(res.success.all())
    assert bool((res.norm[:15] == 0).all())
    # a linear binary model needs one linearisation per attacked sample: 25 backward passes in all
    assert res.queries["backward"] == 25
    walked = DeepFool(norm=2, clip=False, refine=3)(clf, x, y)
    assert bool((walked.norm[:15] == 0).all())  # nothing to walk at distance 0
    # the walk: one backward per attacked sample and round while it still moves (on a flat boundary it moves once,
    # from the overshoot to the margin, then stops), and at most three forwards per backward
    extra_fwd = walked.queries["forward"] - res.queries["forward"]
    extra_bwd = walked.queries["backward"] - res.queries["backward"]
    assert 25 <= extra_bwd <= 50
    assert extra_bwd <= extra_fwd <= 4 * extra_bwd
    assert bool((walked.norm[15:] < res.norm[15:]).all())


def test_deepfool_candidates_limit_backward_passes() -> None:
    m, clf = affine_clf(30, 10, seed=2)
    x = torch.randn(20, 30)
    full = DeepFool(norm=2, candidates=None, clip=False, refine=0)(clf, x)
    one = DeepFool(norm=2, candidates=1, clip=False, refine=0)(clf, x)
    iters_one = one.queries["backward"]  # one candidate: one backward per sample and iteration
    assert full.queries["backward"] >= 9 * 20
    assert iters_one < full.queries["backward"] / 3
    assert bool(one.success.all())


def box_qp_distance(w: torch.Tensor, f: torch.Tensor, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """min ||r||_2 s.t. <w, r> = -f, lo <= x + r <= hi, per sample.

    KKT: r = clip(lam w, lo - x, hi - x), with lam found by bisection."""
    a, b = torch.zeros_like(f), torch.full_like(f, 1e6)
    for _ in range(200):
        lam = (a + b) / 2
        r = torch.maximum(torch.minimum(lam[:, None] * w, hi - x), lo - x)
        reach = (w * r).sum(1) >= -f
        b = torch.where(reach, lam, b)
        a = torch.where(reach, a, lam)
    r = torch.maximum(torch.minimum(b[:, None] * w, hi - x), lo - x)
    return r.norm(dim=1)


def test_deepfool_box_aware_matches_box_constrained_optimum() -> None:
    torch.manual_seed(0)
    d = 200
    m, clf = affine_clf(d, 2, seed=5, bounds=(0.0, 1.0))
    x = (torch.rand(30, d) > 0.7).float()  # binary images: every pixel sits at a bound
    z = x @ m.W.T + m.b
    c = z.argmax(1)
    w = m.W[1 - c] - m.W[c]  # direction that increases the other logit minus the predicted one
    f = z.gather(1, (1 - c)[:, None]).squeeze(1) - z.gather(1, c[:, None]).squeeze(1)
    opt = box_qp_distance(w, f, x, 0.0, 1.0)
    res = DeepFool(norm=2, refine=0)(clf, x)
    assert bool(res.success.all())
    adv = res.adversarial
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert bool((res.norm >= opt * (1 - 1e-4)).all())  # the optimum is a lower bound...
    assert bool((res.norm <= opt * 1.02 * 1.01).all())  # ...that the box-aware steps reach (up to the overshoot)
    assert res.queries["backward"] == x.shape[0]  # one box-aware linearisation per sample is exact here
    plain = DeepFool(norm=2, box_aware=False, refine=0)(clf, x)  # clipping the plain step needs many more iterations
    assert plain.queries["backward"] > 5 * x.shape[0]
    walked = DeepFool(norm=2, refine=3)(clf, x)  # the walk's line search in the box trims the overshoot to its margin
    assert bool(walked.success.all())
    assert float(walked.adversarial.min()) >= 0.0 and float(walked.adversarial.max()) <= 1.0
    assert bool((walked.norm >= opt * (1 - 1e-4)).all())
    assert bool((walked.norm <= opt * (1 + 1e-3)).all())


def test_deepfool_targeted_reaches_target() -> None:
    m, clf = affine_clf(40, 6, seed=4)
    x = torch.randn(24, 40)
    y = clf.predict(x)
    t = (y + 1 + torch.arange(24) % 5) % 6
    res = DeepFool(norm=2, clip=False, refine=3)(clf, x, y, target=t)
    assert bool(res.success.all())
    assert bool((clf.predict(res.adversarial) == t).all())
    # targeted distance is at least the distance to the target's hyperplane
    z = x @ m.W.T + m.b
    wt = m.W[t] - m.W[y]
    ft = (z.gather(1, y[:, None]) - z.gather(1, t[:, None])).squeeze(1)
    assert bool((res.norm >= ft / wt.norm(dim=1) * (1 - 1e-4)).all())


def test_deepfool_keeps_inputs_and_bounds() -> None:
    m, clf = affine_clf(64, 5, seed=6, bounds=(0.0, 1.0))
    x = torch.rand(16, 64)
    x[:, :10] = 0.0
    x[:, 10:20] = 1.0
    x_copy = x.clone()
    y = clf.predict(x)
    y_copy = y.clone()
    res = DeepFool(norm=INF)(clf, x, y)
    assert torch.equal(x, x_copy) and torch.equal(y, y_copy)
    assert float(res.adversarial.min()) >= 0.0 and float(res.adversarial.max()) <= 1.0
    assert bool(res.success.all())
    assert bool((clf.predict(res.adversarial) != y).all())


def test_deepfool_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError):
        DeepFool(norm=0)
    with pytest.raises(ConfigError):
        DeepFool(overshoot=-1)
    with pytest.raises(ConfigError):
        DeepFool(candidates=0)
    with pytest.raises(ConfigError):
        DeepFool(refine=-1)


# ---------------------------------------------------------------- subspace restriction (eq. 18)
def random_basis(d: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, k, generator=g)).Q


@pytest.mark.parametrize("k", [1, 16, 200])
def test_subspace_deepfool_affine_margin(k: int) -> None:
    d = 256
    m, clf = affine_clf(d, 2, seed=7)
    basis = random_basis(d, k, seed=k)
    x = torch.randn(20, d)
    res = SubspaceAttack(DeepFool(norm=2, clip=False, refine=3), basis)(clf, x)
    z = x @ m.W.T + m.b
    c = z.argmax(1)
    w = m.W[1 - c] - m.W[c]
    f = (z.gather(1, c[:, None]) - z.gather(1, (1 - c)[:, None])).squeeze(1)
    pw = w @ basis @ basis.T
    exact = f / pw.norm(dim=1)  # |w.x + b| / ||P_S w||_2
    assert bool(res.success.all())
    assert_walked_to(res.norm, exact, 2e-4)  # float32 logits
    r = res.perturbation
    torch.testing.assert_close(r @ basis @ basis.T, r, rtol=0, atol=1e-4 * float(r.abs().max()))
    assert res.attack == "deepfool_subspace"


def test_subspace_full_basis_equals_plain_attack() -> None:
    d = 32
    m, clf = affine_clf(d, 4, seed=8)
    x = torch.randn(10, d)
    plain = DeepFool(norm=2, clip=False)(clf, x)
    sub = SubspaceAttack(DeepFool(norm=2, clip=False), random_basis(d, d, seed=1))(clf, x)
    torch.testing.assert_close(sub.norm, plain.norm, rtol=1e-4, atol=1e-6)


def test_subspace_rejects_bad_basis() -> None:
    m, clf = affine_clf(16, 2)
    with pytest.raises(ConfigError, match="orthonormal"):
        SubspaceAttack(DeepFool(), torch.randn(16, 4))
    with pytest.raises(InputError, match="rows"):
        SubspaceAttack(DeepFool(clip=False), random_basis(8, 2, 0))(clf, torch.randn(3, 16))
