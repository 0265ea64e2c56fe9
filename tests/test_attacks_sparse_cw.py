"""SparseFool, Carlini-Wagner L2 and FMN against closed forms on affine models (paper eq. 8-9), plus regressions."""

from __future__ import annotations

import math

import pytest
import torch
from models import Affine, affine_distance
from test_attacks_minimal import nearest_hyperplane_is_boundary  # the validity test of the multiclass closed form

from robustlens.attacks.cw import CarliniWagner
from robustlens.attacks.deepfool import DeepFool
from robustlens.attacks.fmn import FMN
from robustlens.attacks.sparsefool import SparseFool
from robustlens.classifier import Classifier
from robustlens.errors import ConfigError
from robustlens.norms import dual

INF = math.inf
WIDE = (-1e3, 1e3)  # a box that never binds


def affine_clf(d: int, c: int, seed: int = 0, bounds: tuple[float, float] = WIDE) -> tuple[Affine, Classifier]:
    m = Affine(d, c, seed=seed)
    return m, Classifier(m, bounds=bounds)


def draw(*shape: int, seed: int, uniform: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) if uniform else torch.randn(*shape, generator=g)


def valid_multiclass(m: Affine, x: torch.Tensor, p: float) -> torch.Tensor:
    """Samples where the nearest hyperplane's distance is the exact distance to the decision region's boundary."""
    return nearest_hyperplane_is_boundary(m, x, p).argmax(1) != (x @ m.W.T + m.b).argmax(1)


# ---------------------------------------------------------------------------------------------- SparseFool
@pytest.mark.parametrize("d", [2, 100, 3072])
def test_sparsefool_binary_affine_exact_l1(d: int) -> None:
    m, clf = affine_clf(d, 2, seed=d)
    x = draw(16, d, seed=102)
    res = SparseFool(lam=1.0, overshoot=0.02, deepfool_overshoot=0.02)(clf, x)
    exact = affine_distance(m, x, dual(1))  # |w.x + b| / ||w||_inf
    assert bool(res.success.all())
    torch.testing.assert_close(res.norm / (1.02 * 1.02), exact, rtol=1e-3, atol=0)
    assert bool((res.norms(0) == 1).all())  # the L1 optimum of one hyperplane moves a single coordinate


def test_sparsefool_lambda_places_the_hyperplane_beyond_the_boundary() -> None:
    m, clf = affine_clf(64, 2, seed=11)
    x = draw(12, 64, seed=103)
    res = SparseFool(lam=2.0, overshoot=0.0, deepfool_overshoot=1e-4)(clf, x)
    exact = affine_distance(m, x, dual(1))
    torch.testing.assert_close(res.norm / (2.0 * 1.0001), exact, rtol=1e-3, atol=0)


def test_sparsefool_multiclass_affine() -> None:
    """SparseFool linearises at DeepFool's (L2) boundary point, so it takes the L1-minimal step to the hyperplane of
    the L2-nearest class: on an affine model that is exactly |f_k| / ||w_k||_inf with k = argmin_k |f_k| / ||w_k||_2
    (at least the L1 distance to the nearest hyperplane, which is a lower bound)."""
    m, clf = affine_clf(3072, 10, seed=3)
    x = draw(32, 3072, seed=104)
    res = SparseFool(overshoot=0.0, deepfool_overshoot=1e-4, candidates=None)(clf, x)
    assert bool(res.success.all())
    z = x @ m.W.T + m.b
    c = z.argmax(1)
    diffs = m.W[c][:, None, :] - m.W[None, :, :]
    f = z.gather(1, c[:, None]) - z
    l2 = (f / diffs.norm(dim=2).clamp_min(1e-12)).scatter(1, c[:, None], INF)
    k = l2.argmin(1)
    expected = f.gather(1, k[:, None]).squeeze(1) / diffs[torch.arange(32), k].abs().amax(1)
    torch.testing.assert_close(res.norm / 1.0001, expected, rtol=1e-3, atol=0)
    assert bool((res.norm >= affine_distance(m, x, dual(1)) * (1 - 1e-4)).all())


def test_sparsefool_box_constrained_matches_linear_program() -> None:
    """With the box binding, the L1 minimal perturbation of a binary affine model is a linear program."""
    from scipy.optimize import linprog

    d = 30
    m, clf = affine_clf(d, 2, seed=4, bounds=(0.0, 1.0))
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(10, d, generator=g) > 0.5).float() * 0.9 + 0.05  # pixels near the bounds: little room
    res = SparseFool(overshoot=0.0, deepfool_overshoot=1e-4)(clf, x)
    assert bool(res.success.all())
    assert float(res.adversarial.min()) >= 0 and float(res.adversarial.max()) <= 1
    z = x @ m.W.T + m.b
    c = z.argmax(1)
    for i in range(x.shape[0]):
        w = (m.W[1 - c[i]] - m.W[c[i]]).double().numpy()  # must reach <w, d> = f
        f = float(z[i, c[i]] - z[i, 1 - c[i]])
        xi = x[i].double().numpy()
        lp = linprog(
            [1.0] * (2 * d), A_eq=[list(w) + list(-w)], b_eq=[f],
            bounds=[(0, 1 - v) for v in xi] + [(0, v) for v in xi],
        )
        assert lp.status == 0
        assert lp.fun * (1 - 1e-4) <= float(res.norm[i]) <= lp.fun * 1.002


def test_sparsefool_trim_keeps_the_shortest_adversarial_prefix_of_the_step() -> None:
    """With ``lam = 3`` the L1 step to the hyperplane moves more coordinates than crossing the boundary needs; the
    trimmed step is the untrimmed one restricted to its first coordinates (largest ``|w_i|`` first), adversarial, and
    one coordinate fewer is not."""
    d = 30
    m, clf = affine_clf(d, 2, seed=4, bounds=(0.0, 1.0))
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(10, d, generator=g) > 0.5).float() * 0.9 + 0.05  # pixels near the bounds: little room
    full = SparseFool(lam=3.0, overshoot=0.0, trim=False)(clf, x)
    res = SparseFool(lam=3.0, overshoot=0.0)(clf, x)
    assert bool(res.success.all()) and bool(full.success.all())
    l0, l0_full = res.norms(0), full.norms(0)
    assert bool((l0 <= l0_full).all()) and bool((l0 < l0_full).any())
    pert, pert_full = res.adversarial - x, full.adversarial - x
    moved = pert != 0
    torch.testing.assert_close(pert[moved], pert_full[moved])
    c = clf.predict(x)
    w = m.W[1 - c] - m.W[c]
    for i in range(x.shape[0]):
        dropped = w[i, ~moved[i] & (pert_full[i] != 0)].abs()
        assert dropped.numel() == 0 or float(dropped.max()) <= float(w[i, moved[i]].abs().min())
        if int(l0[i]) > 1:  # dropping the last coordinate of the prefix leaves the clean side
            last = torch.where(moved[i], w[i].abs(), torch.inf).argmin()
            shorter = res.adversarial[i].clone()
            shorter[last] = x[i, last]
            assert int(clf.predict(shorter[None])[0]) == int(c[i])


def test_sparsefool_targeted_reaches_target_and_respects_bounds() -> None:
    m, clf = affine_clf(48, 6, seed=5, bounds=(0.0, 1.0))
    x = draw(20, 48, seed=110, uniform=True)
    x[:, :8] = 0.0
    x[:, 8:16] = 1.0
    res = SparseFool()(clf, x, target="random", seed=3)
    assert bool(res.success.all())
    assert torch.equal(clf.predict(res.adversarial), res.targets)
    assert float(res.adversarial.min()) >= 0 and float(res.adversarial.max()) <= 1
    again = SparseFool()(clf, x, target="random", seed=3)
    assert torch.equal(again.adversarial, res.adversarial) and torch.equal(again.targets, res.targets)


def test_sparsefool_finished_samples_cost_nothing() -> None:
    m, clf = affine_clf(40, 2, seed=6)
    x = draw(10, 40, seed=105)
    y = 1 - clf.predict(x)  # every sample already misclassified under the labels given
    res = SparseFool()(clf, x, y)
    assert bool(res.success.all()) and bool((res.norm == 0).all())
    assert res.queries["backward"] == 0
    y2 = clf.predict(x)
    y2[:4] = 1 - y2[:4]
    res2 = SparseFool()(clf, x, y2)
    assert bool((res2.norm[:4] == 0).all()) and bool((res2.norm[4:] > 0).all())  # the labels given are used


# ---------------------------------------------------------------------------------------------- FMN
@pytest.mark.parametrize("p", [2, INF])
@pytest.mark.parametrize("d", [100, 3072])
def test_fmn_binary_affine_exact(p: float, d: int) -> None:
    m, clf = affine_clf(d, 2, seed=d + 1)
    x = draw(8, d, seed=106)
    res = FMN(norm=p, steps=100)(clf, x)
    exact = affine_distance(m, x, dual(p))
    assert bool(res.success.all())
    torch.testing.assert_close(res.norm, exact, rtol=1e-3, atol=0)


@pytest.mark.parametrize("d", [100, 3072])
def test_fmn_l1_binary_affine_exact(d: int) -> None:
    """The L1 optimum of an affine model moves one coordinate; FMN's dense steps approach it slowly (2.9% above
    at D=100 and 13% at D=3072 after 100 steps) and the linear refinement lands on it."""
    m, clf = affine_clf(d, 2, seed=d + 1)
    x = draw(8, d, seed=107)
    res = FMN(norm=1, steps=100)(clf, x)
    assert bool(res.success.all())
    torch.testing.assert_close(res.norm, affine_distance(m, x, dual(1)), rtol=1e-3, atol=0)
    assert bool((res.norms(0) == 1).all())
    unrefined = FMN(norm=1, steps=100, refine=0)(clf, x)
    assert bool((unrefined.norm >= res.norm).all())


@pytest.mark.parametrize("p", [2, INF])
def test_fmn_multiclass_affine(p: float) -> None:
    m, clf = affine_clf(784, 10, seed=9)
    x = draw(16, 784, seed=109)
    res = FMN(norm=p, steps=100)(clf, x)
    exact = affine_distance(m, x, dual(p))
    assert bool(res.success.all())
    assert bool((res.norm >= exact * (1 - 1e-4)).all())
    valid = valid_multiclass(m, x, p)
    torch.testing.assert_close(res.norm[valid], exact[valid], rtol=1e-3, atol=0)


# ---------------------------------------------------------------------------------------------- Carlini-Wagner
def test_cw_binary_affine_approaches_exact_l2() -> None:
    m, clf = affine_clf(100, 2, seed=12, bounds=(0.0, 1.0))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(12, 100, generator=g) * 0.5 + 0.25  # far from the bounds
    res = CarliniWagner(steps=100, binary_search_steps=6, initial_const=1.0, lr=0.02)(clf, x)
    exact = affine_distance(m, x, 2.0)
    ratio = res.norm / exact
    assert bool(res.success.all())
    assert bool((ratio >= 1 - 1e-4).all())  # nothing is closer than the hyperplane
    assert float(ratio.median()) <= 1.01 and float(ratio.max()) <= 1.05


def test_cw_targeted_reaches_target() -> None:
    m, clf = affine_clf(64, 5, seed=13, bounds=(0.0, 1.0))
    x = draw(10, 64, seed=111, uniform=True) * 0.5 + 0.25
    res = CarliniWagner(steps=100, binary_search_steps=4, initial_const=1.0)(clf, x, target="least-likely")
    assert bool(res.success.all())
    assert torch.equal(clf.predict(res.adversarial), res.targets)


def test_cw_kappa_gives_confident_examples() -> None:
    m, clf = affine_clf(64, 2, seed=14, bounds=(0.0, 1.0))
    x = draw(8, 64, seed=112, uniform=True) * 0.5 + 0.25
    res = CarliniWagner(steps=50, binary_search_steps=3, initial_const=1.0, kappa=0.5)(clf, x)
    assert bool(res.success.all())
    z = clf.logits(res.adversarial)
    y = res.labels
    margin = z.gather(1, y[:, None]).squeeze(1) - z.scatter(1, y[:, None], -INF).amax(1)
    assert bool((margin <= -0.5 + 1e-5).all())


def test_cw_failed_samples_come_back_clean_not_blank() -> None:
    """A blank image is adversarial for this model, yet a failed C&W sample must return its clean input."""
    m, clf = affine_clf(50, 2, seed=15, bounds=(0.0, 1.0))
    x = torch.full((6, 50), 0.9)
    with torch.no_grad():
        m.linear.bias.copy_(-(torch.full((50,), 0.45) @ m.linear.weight.T))  # class flips between 0 and 0.9
    y = clf.predict(x)
    assert bool((clf.predict(torch.zeros_like(x)) != y).all())
    res = CarliniWagner(steps=2, binary_search_steps=1, initial_const=1e-6)(clf, x, y)
    assert not bool(res.success.any())
    assert torch.equal(res.adversarial, x)
    assert bool(torch.isinf(res.norm).all())
    assert torch.equal(clf.predict(res.adversarial), y)  # success is judged on the returned image


def test_cw_pixels_at_the_bounds_move_inward() -> None:
    """Binary images: every pixel sits at 0 or 1 and the attack must move them inward to succeed."""
    m, clf = affine_clf(100, 2, seed=16, bounds=(0.0, 1.0))
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(8, 100, generator=g) > 0.6).float()
    res = CarliniWagner(steps=100, binary_search_steps=3, initial_const=1.0, lr=0.05)(clf, x)
    assert bool(res.success.all())
    r = res.perturbation
    assert bool(((r > 1e-3) & (x == 0)).any(1).all()) and bool(((r < -1e-3) & (x == 1)).any(1).all())
    optimum = DeepFool(norm=2, overshoot=0.0)(clf, x).norm  # box-aware DeepFool is exact on this model
    assert bool((res.norm <= optimum * 1.05).all())


@pytest.mark.parametrize("attack", [
    lambda: CarliniWagner(steps=20, binary_search_steps=2, initial_const=1.0),
    lambda: SparseFool(),
], ids=["cw", "sparsefool"])
def test_inputs_are_never_modified_and_labels_are_used(attack) -> None:
    m, clf = affine_clf(3 * 4 * 4, 4, seed=17, bounds=(0.0, 1.0))
    x = draw(8, 3, 4, 4, seed=113, uniform=True)
    x[:, 0] = 0.0
    x[:, 1] = 1.0
    y = clf.predict(x)
    y[:3] = (y[:3] + 1) % 4  # three samples misclassified under the labels given
    xc, yc = x.clone(), y.clone()
    res = attack()(clf, x, y)
    assert torch.equal(x, xc) and torch.equal(y, yc)
    assert torch.equal(res.labels, y)
    assert bool(res.success[:3].all()) and bool((res.norm[:3] == 0).all())
    assert float(res.adversarial.min()) >= 0 and float(res.adversarial.max()) <= 1
    pred = clf.predict(res.adversarial)
    assert torch.equal(res.success, pred != y)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        SparseFool(lam=0.5)
    with pytest.raises(ConfigError):
        SparseFool(max_iter=0)
    with pytest.raises(ConfigError):
        CarliniWagner(steps=0)
    with pytest.raises(ConfigError):
        CarliniWagner(box_shrink=0.0)
    with pytest.raises(ConfigError):
        CarliniWagner(clip=False)


def test_cw_box_shrink_offset_is_not_left_in_the_result() -> None:
    """Pixels at the bounds start slightly inside the box; those the attack does not need come back to their value."""
    m, clf = affine_clf(100, 2, seed=18, bounds=(0.0, 1.0))
    x = draw(6, 100, seed=114, uniform=True)
    x[:, :50] = 0.0  # half the pixels saturated
    res = CarliniWagner(steps=100, binary_search_steps=3, initial_const=1.0, box_shrink=1e-3)(clf, x)
    assert bool(res.success.all())
    untouched = (res.perturbation.abs() == 0)[:, :50].double().mean()
    assert float(untouched) > 0.2  # without the snap every saturated pixel is off by box_shrink / 2
