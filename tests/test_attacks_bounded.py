"""Eps-bounded attacks against ground truth: affine classifiers with closed-form distances (paper eq. 10-12)."""

from __future__ import annotations

import pytest
import torch
from models import Affine, affine_distance

from robustlens.attacks.apgd import APGD, checkpoints
from robustlens.attacks.fgsm import FGSM
from robustlens.attacks.pgd import PGD
from robustlens.classifier import Classifier
from robustlens.errors import ConfigError
from robustlens.norms import INF, dual, lp_norm, minimal_linear_step_in_box

NORMS = {"Linf": INF, "L2": 2.0, "L1": 1.0}


def _setup(d: int, c: int, n: int = 120, seed: int = 0) -> tuple[Affine, Classifier, torch.Tensor]:
    model = Affine(d, c, seed=seed)
    clf = Classifier(model, bounds=(0.0, 1.0))
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, d, generator=g) * 0.5 + 0.25  # far from the bounds: the box never binds at these eps
    return model, clf, x


def _mid_eps(dist: torch.Tensor) -> float:
    """An eps halfway between two consecutive exact distances near the median (no sample sits at eps)."""
    s = dist.sort().values
    k = s.numel() // 2
    return float(s[k - 1] + s[k]) / 2


@pytest.mark.parametrize("d", [784, 3072])
@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize(
    "make",
    [
        lambda n, e: PGD(n, e, steps=40, alpha=e / 4),
        lambda n, e: APGD(n, e, steps=50),
        lambda n, e: APGD(n, e, steps=50, early_stop=False),
        lambda n, e: FGSM(n, e),
    ],
    ids=["pgd", "apgd-ce", "apgd-ce-full", "fgsm"],
)
def test_robust_accuracy_equals_exact_fraction_on_binary_affine(d, norm, make):
    """Two classes: the boundary is one hyperplane, the loss is monotone in its signed distance, so a correct
    eps-bounded attack fools exactly the samples whose exact distance |w.x+b|/||w||_q is at most eps."""
    model, clf, x = _setup(d, 2)
    dist = affine_distance(model, x, dual(NORMS[norm]))
    eps = _mid_eps(dist)
    res = make(norm, eps)(clf, x)
    exact = (dist > eps).float().mean()
    assert float(res.robust_accuracy()) == pytest.approx(float(exact), abs=0)
    assert torch.equal(res.success, dist <= eps)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_multiclass_affine_is_sound_and_apgd_dlr_targets_are_exact(norm):
    """Ten classes: no attack may fool a sample beyond its exact distance (soundness); the targeted DLR loss aimed
    at each other class in turn (AutoAttack's APGD-T) fools exactly the samples within eps of some boundary."""
    from robustlens.attacks.autoattack import autoattack

    model, clf, x = _setup(784, 10, n=100)
    dist = affine_distance(model, x, dual(NORMS[norm]))
    eps = _mid_eps(dist)
    for attack in (PGD(norm, eps, steps=40), APGD(norm, eps, steps=50)):
        res = attack(clf, x)
        assert not bool((res.success & (dist > eps)).any())
    aa = autoattack(clf, x, norm=norm, eps=eps, seed=0, progress=False)
    assert torch.equal(aa.success, dist <= eps)
    assert float(aa.robust_accuracy()) == float((dist > eps).float().mean())


ALL = [
    ("fgsm", lambda n, e: FGSM(n, e)),
    ("pgd", lambda n, e: PGD(n, e, steps=10)),
    ("pgd-restarts", lambda n, e: PGD(n, e, steps=5, restarts=3)),
    ("apgd-ce", lambda n, e: APGD(n, e, steps=20)),
    ("apgd-dlr", lambda n, e: APGD(n, e, steps=20, loss="dlr")),
]


def _square(n: str, e: float):
    from robustlens.attacks.square import Square

    return Square(n, e, queries=200)


@pytest.mark.parametrize("norm", ["Linf", "L2", "L1"])
@pytest.mark.parametrize("name,make", ALL + [("square", _square)], ids=[a for a, _ in ALL] + ["square"])
def test_results_respect_bounds_and_eps_and_leave_inputs_alone(norm, name, make):
    if norm == "L1" and name.startswith(("apgd", "square")):
        with pytest.raises(ConfigError):
            make(norm, 1.0)
        return
    model = Affine(3 * 8 * 8, 10, seed=3, input_shape=(3, 8, 8))
    clf = Classifier(model, bounds=(0.0, 1.0))
    g = torch.Generator().manual_seed(5)
    x = torch.rand(40, 3, 8, 8, generator=g)
    x[:, :, :2] = 0.0  # pixels at the bounds
    x[:, :, -2:] = 1.0
    x_copy = x.clone()
    eps = {"Linf": 0.05, "L2": 0.5, "L1": 2.0}[norm]
    res = make(norm, eps)(clf, x, seed=1)
    assert torch.equal(x, x_copy), "the caller's tensor was modified"
    assert float(res.adversarial.min()) >= 0.0 and float(res.adversarial.max()) <= 1.0
    assert float(lp_norm(res.perturbation, NORMS[norm]).max()) <= eps * (1 + 1e-5) + 1e-6
    assert bool(res.success.any()), "the attack fooled nothing at a generous eps"
    # success is computed on the returned image; failures come back clean
    pred = clf.predict(res.adversarial)
    assert torch.equal(res.success, pred != res.labels)
    assert torch.equal(res.adversarial[~res.success], x[~res.success])
    # same seed, bit-identical result
    again = make(norm, eps)(clf, x, seed=1)
    assert torch.equal(again.adversarial, res.adversarial)


@pytest.mark.parametrize("norm", ["Linf", "L2"])
@pytest.mark.parametrize(
    "make", [lambda n: PGD(n, 0.3 if n == "Linf" else 3.0, steps=30), lambda n: APGD(n, 0.3 if n == "Linf" else 3.0,
                                                                                       steps=30, loss="dlr")],
    ids=["pgd", "apgd-dlr-t"],
)
def test_targeted_attacks_reach_the_target(norm, make):
    model, clf, x = _setup(256, 10, n=30)
    res = make(norm)(clf, x, target="least-likely")
    assert bool(res.success.all())
    assert torch.equal(clf.predict(res.adversarial), res.targets)


def test_failed_samples_come_back_clean_and_random_start_is_batch_independent():
    model, clf, x = _setup(100, 10, n=30)
    res = PGD("Linf", 1e-4, steps=3)(clf, x, seed=0)
    assert not bool(res.success.any())
    assert torch.equal(res.adversarial, x)
    full = PGD("Linf", 0.02, steps=2)(clf, x, seed=7)
    half = PGD("Linf", 0.02, steps=2)(clf, x[10:20], seed=7, indices=torch.arange(10, 20))
    assert torch.equal(full.adversarial[10:20], half.adversarial)


def test_queries_count_steps_and_finished_samples_stop_costing():
    model, clf, x = _setup(100, 10, n=50)
    res = PGD("Linf", 1e-4, steps=7)(clf, x)  # nothing is fooled: every sample runs every step
    assert res.queries["backward"] == 7 * 50
    assert res.queries["forward"] == 7 * 50 + 2 * 50  # + the clean and the final check, no extra pass per step
    big = PGD("Linf", 0.5, steps=7)(clf, x)  # everything falls at the first iterate
    assert bool(big.success.all()) and big.queries["backward"] < 2 * 50


def test_apgd_checkpoints_follow_the_paper_schedule():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


@pytest.mark.parametrize("p", [1.0, 2.0, INF])
def test_box_constrained_hyperplane_step_matches_a_convex_solver(p):
    """min ||d||_p s.t. <w, d> = c, low <= d <= high, checked against scipy's SLSQP on small problems."""
    from scipy.optimize import linprog, minimize

    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 6, generator=g, dtype=torch.float64)
    low = -torch.rand(4, 6, generator=g, dtype=torch.float64) * 0.5
    high = torch.rand(4, 6, generator=g, dtype=torch.float64) * 0.5
    c = torch.tensor([0.3, -0.2, 0.05, -0.4], dtype=torch.float64)
    d = minimal_linear_step_in_box(w, c, p, low, high)
    torch.testing.assert_close((w * d).sum(1), c)
    assert bool((d >= low - 1e-9).all() and (d <= high + 1e-9).all())
    for i in range(4):
        wi, lo, hi = w[i].numpy(), low[i].numpy(), high[i].numpy()
        if p == 2:
            ci = c[i].item()
            ref = minimize(lambda v: (v**2).sum(), x0=0 * wi,
                           constraints=[{"type": "eq", "fun": lambda v, wi=wi, ci=ci: v @ wi - ci}],
                           bounds=list(zip(lo, hi, strict=True)), method="SLSQP").x
            assert float(lp_norm(d[i : i + 1], p)) <= float((ref**2).sum() ** 0.5) + 1e-5
        else:  # LP in (d, t): L1 with d = u - v; Linf with |d_j| <= t
            n = wi.size
            if p == 1:
                obj = [1.0] * (2 * n)
                a_eq = [list(wi) + list(-wi)]
                bnds = [(0, h) for h in hi] + [(0, -l_) for l_ in lo]
            else:
                obj = [0.0] * n + [1.0]
                a_eq = [list(wi) + [0.0]]
                bnds = list(zip(lo, hi, strict=True)) + [(0, None)]
            a_ub = None
            b_ub = None
            if p == INF:
                import numpy as np

                eye = np.eye(n)
                a_ub = np.vstack([np.hstack([eye, -np.ones((n, 1))]), np.hstack([-eye, -np.ones((n, 1))])])
                b_ub = np.zeros(2 * n)
            lp = linprog(obj, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[c[i].item()], bounds=bnds)
            assert lp.status == 0
            assert float(lp_norm(d[i : i + 1], p)) == pytest.approx(lp.fun, abs=1e-7)


@pytest.mark.parametrize("norm", ["inf", 2])
def test_fgsm_from_a_precomputed_gradient_equals_the_attack(norm) -> None:
    torch.manual_seed(0)
    model = Affine(20, 3, seed=0)
    clf = Classifier(model)
    x = torch.rand(64, 20)
    y = clf.predict(x)
    xr = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xr), y, reduction="sum"), xr)[0]
    atk = FGSM(norm=norm, eps=0.2)
    res = atk(clf, x, y)
    # the attack returns its step where it fools the model (and the clean input elsewhere)
    assert 0 < int(res.success.sum()) < x.shape[0]
    ours = atk.from_gradient(clf, x, grad)
    assert torch.allclose(ours[res.success], res.adversarial[res.success], atol=1e-6)
    assert bool((clf.predict(ours[~res.success]) == y[~res.success]).all())
