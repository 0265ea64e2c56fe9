"""Robust accuracy (eq. 12) and distance-to-boundary statistics (eq. 13) against closed forms on affine models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from models import Affine, affine_distance

from robustlens.attacks import ATTACKS, make_attack
from robustlens.attacks.deepfool import DeepFool
from robustlens.attacks.pgd import PGD
from robustlens.classifier import Classifier
from robustlens.errors import ConfigError
from robustlens.metrics import (
    DistanceStats,
    MinimalNormEvaluation,
    RobustAccuracyCurve,
    distance_stats,
    evaluate_minimal,
    robust_accuracy,
    robust_accuracy_curve,
    stats_of,
)
from robustlens.results import Result


def setup(n: int = 60, d: int = 50, seed: int = 0) -> tuple[Affine, Classifier, torch.Tensor, torch.Tensor]:
    m = Affine(d, 2, seed=seed)
    clf = Classifier(m, bounds=(0.0, 1.0))
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, d, generator=g) * 0.5 + 0.25  # the box never binds at these distances
    y = clf.predict(x)
    y[:6] = 1 - y[:6]  # six samples misclassified under the labels given
    return m, clf, x, y


def test_per_sample_formulas() -> None:
    norm = torch.tensor([0.5, 1.0, 2.0, math.inf, 0.0, 3.0])
    success = torch.tensor([True, True, True, False, True, True])
    correct = torch.tensor([True, True, True, True, False, True])
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    clean_norm = torch.tensor([1.0, 2.0, 4.0, 1.0, 1.0, 3.0])
    curve = robust_accuracy_curve(norm, success, correct, [0.0, 0.75, 1.0, 10.0])
    # correct samples: 0, 1, 2, 3, 5; fooled within eps among them
    assert curve.robust_accuracy == pytest.approx([5 / 6, 4 / 6, 3 / 6, 1 / 6])
    assert curve.clean_accuracy == pytest.approx(5 / 6)
    st = distance_stats(norm, labels, correct, success, clean_norm, quantiles=(0.5, 0.25))
    found = np.array([0.5, 1.0, 2.0, 3.0])
    assert (st.n, st.n_found, st.n_failed) == (5, 4, 1)
    assert st.mean == pytest.approx(found.mean())
    assert st.std == pytest.approx(found.std(ddof=1))
    assert st.quantiles["0.25"] == pytest.approx(np.quantile(found, 0.25))
    assert st.relative_mean == pytest.approx(np.mean([0.5, 0.5, 0.5, 1.0]))
    assert st.rho_adv == st.relative_mean
    assert st.per_class["0"] == {"n": 2, "n_found": 2, "mean": pytest.approx(1.25), "median": pytest.approx(0.5)}
    assert st.per_class["1"]["n"] == 3 and st.per_class["1"]["n_found"] == 2


def test_evaluate_minimal_matches_the_closed_form(tmp_path) -> None:
    m, clf, x, y = setup()
    exact = affine_distance(m, x, 2.0)
    ev = evaluate_minimal(clf, (x, y), DeepFool(norm=2, overshoot=0.0), batch_size=16, seed=0, progress=False)
    correct = clf.predict(x) == y
    assert torch.equal(ev.clean_correct, correct)
    assert torch.equal(ev.labels, y)
    assert bool((ev.norm[~correct] == 0).all())
    torch.testing.assert_close(ev.norm[correct].double(), exact[correct].double(), rtol=1e-3, atol=0)
    st = ev.stats
    assert st.n == int(correct.sum()) and st.n_failed == 0
    assert st.mean == pytest.approx(float(exact[correct].double().mean()), rel=1e-3)
    assert st.median == pytest.approx(float(exact[correct].median()), rel=1e-3)
    rel = exact[correct] / x[correct].norm(dim=1)
    assert st.relative_mean == pytest.approx(float(rel.double().mean()), rel=1e-3)
    for c in (0, 1):
        sel = correct & (y == c)
        assert st.per_class[str(c)]["mean"] == pytest.approx(float(exact[sel].double().mean()), rel=1e-3)
    s = exact[correct].sort().values
    eps = [0.0, float(s[10] + s[11]) / 2, float(s[-1]) * 2]
    ra = ev.robust_accuracy(eps)
    truth = [float((correct & (exact > e)).double().mean()) for e in eps]
    assert ra.tolist() == pytest.approx(truth)
    # JSON round trip of the whole evaluation, nested results included
    path = ev.save(tmp_path / "ev.json")
    back = Result.load(path)
    assert isinstance(back, MinimalNormEvaluation) and isinstance(back.stats, DistanceStats)
    assert back.stats.quantiles == pytest.approx(st.quantiles)
    assert torch.equal(back.norm, ev.norm) and back.curve.robust_accuracy == ev.curve.robust_accuracy


def test_minimal_and_bounded_routes_agree_with_the_exact_fraction() -> None:
    m, clf, x, y = setup(n=50, d=80, seed=3)
    exact = affine_distance(m, x, 1.0)  # Linf distance: the dual norm of w is L1
    correct = clf.predict(x) == y
    s = exact[correct].sort().values
    eps = [float(s[k] + s[k + 1]) / 2 for k in (5, 20, 35)]
    truth = [float((correct & (exact > e)).double().mean()) for e in eps]
    minimal = robust_accuracy(clf, (x, y), DeepFool(norm="Linf", overshoot=1e-4), eps, progress=False)
    bounded = robust_accuracy(clf, (x, y), lambda e: PGD("Linf", e, steps=20), eps, batch_size=20, progress=False)
    assert minimal.source == "minimal" and bounded.source == "bounded"
    assert minimal.robust_accuracy == pytest.approx(truth)
    assert bounded.robust_accuracy == pytest.approx(truth)
    assert bounded.clean_accuracy == pytest.approx(float(correct.double().mean()))
    assert bounded.at(eps[1]) == pytest.approx(truth[1])


def test_checkpoint_resume_and_batch_independence(tmp_path) -> None:
    m, clf, x, y = setup(n=30)
    a = evaluate_minimal(clf, (x, y), DeepFool(), batch_size=7, state_dir=tmp_path / "s", progress=False)
    b = evaluate_minimal(clf, (x, y), DeepFool(), batch_size=7, state_dir=tmp_path / "s", resume=True,
                         progress=False)
    c = evaluate_minimal(clf, (x, y), DeepFool(), batch_size=30, progress=False)
    assert torch.equal(a.norm, b.norm)
    torch.testing.assert_close(a.norm, c.norm, rtol=1e-5, atol=1e-7)  # other batch shapes: last-bit BLAS noise
    assert sorted(p.name for p in (tmp_path / "s").glob("batch_*.npz")) == [f"batch_{i:06d}.npz" for i in range(5)]
    with pytest.raises(ConfigError):  # a different attack cannot resume this state
        evaluate_minimal(clf, (x, y), DeepFool(overshoot=0.1), batch_size=7, state_dir=tmp_path / "s",
                         resume=True, progress=False)


def test_dataloader_input_and_plot(tmp_path) -> None:
    m, clf, x, y = setup(n=20)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)
    ev = evaluate_minimal(clf, loader, DeepFool(), progress=False)
    direct = evaluate_minimal(clf, (x, y), DeepFool(), progress=False)
    assert torch.equal(ev.norm, direct.norm)
    curve = ev.curve
    assert len(curve.eps) == 50 and curve.robust_accuracy[0] == pytest.approx(curve.clean_accuracy)
    assert all(a >= b for a, b in zip(curve.robust_accuracy, curve.robust_accuracy[1:], strict=False))
    ax = curve.plot()
    assert len(ax.lines) == 1
    ax.figure.savefig(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert isinstance(Result.load(curve.save(tmp_path / "c.json")), RobustAccuracyCurve)


def test_stats_of_one_batch_and_bad_arguments() -> None:
    m, clf, x, y = setup(n=12)
    res = DeepFool()(clf, x, y)
    st = stats_of(res)
    assert st.n_found == int((res.success & res.clean_correct).sum())
    with pytest.raises(ConfigError):
        stats_of(PGD("Linf", 0.1, steps=2)(clf, x, y))
    with pytest.raises(ConfigError):  # a fixed-eps attack cannot answer other eps
        robust_accuracy(clf, (x, y), PGD("Linf", 0.1), [0.1, 0.2], progress=False)
    with pytest.raises(ConfigError):
        robust_accuracy(clf, (x, y), lambda e: PGD("Linf", 0.5), [0.1], progress=False)
    with pytest.raises(ConfigError):
        robust_accuracy(clf, (x, y), DeepFool(), [-1.0], progress=False)
    with pytest.raises(ConfigError):
        distance_stats(res.norm, res.labels, res.clean_correct, res.success, quantiles=(1.5,))


def test_factory_may_return_any_runner_with_an_eps() -> None:
    """Ensembles such as AutoAttack are not Attack subclasses; a factory may return any callable with ``eps``."""
    from robustlens.attacks.fgsm import FGSM

    class Wrapped:
        name = "wrapped-fgsm"
        p = math.inf

        def __init__(self, eps: float) -> None:
            self.eps = eps
            self.inner = FGSM("Linf", eps)
            self.settings = {"eps": eps}

        def __call__(self, clf, x, y=None, *, target=None, seed=0, indices=None):
            return self.inner(clf, x, y, target=target, seed=seed, indices=indices)

    m, clf, x, y = setup(n=40, d=30, seed=5)
    exact = affine_distance(m, x, 1.0)
    correct = clf.predict(x) == y
    s = exact[correct].sort().values
    eps = [float(s[k] + s[k + 1]) / 2 for k in (3, 15)]
    curve = robust_accuracy(clf, (x, y), Wrapped, eps, progress=False)
    assert curve.attack == "wrapped-fgsm" and curve.p == math.inf
    assert curve.robust_accuracy == pytest.approx([float((correct & (exact > e)).double().mean()) for e in eps])


@pytest.mark.parametrize("name", [e.name for e in ATTACKS.entries() if not e.meta["minimal"]])
def test_robust_accuracy_takes_every_registered_bounded_attack(name: str) -> None:
    """Issue 14: ``robust_accuracy(clf, data, make_attack("autoattack", ...), eps)`` was a TypeError. Every bounded
    attack of the registry works, as an attack or as a factory, agrees with its own result, and is sound on an
    affine model (no sample fooled beyond the exact distance to the nearest of its linear boundaries)."""
    model = Affine(8, 3, seed=2)
    clf = Classifier(model)
    x = torch.rand(12, 8, generator=torch.Generator().manual_seed(3)) * 0.5 + 0.25
    if name == "square":
        x = x.view(-1, 1, 2, 4)  # Square needs images (AutoAttack skips its Square stage on flat inputs)
    y = clf.predict(x)
    exact = affine_distance(model, x, 1.0)  # Linf distances (dual norm L1)
    eps = float(exact.median())
    attack = make_attack(name, "Linf", eps, None if name == "autoattack" else 20)
    curve = robust_accuracy(clf, (x, y), attack, eps, batch_size=5, progress=False)
    direct = attack(clf, x, y)
    assert curve.robust_accuracy == [pytest.approx(float(direct.robust_accuracy()[0]))]
    assert not bool((direct.success & direct.clean_correct & (exact > eps + 1e-6)).any())  # sound
    grid = [eps] if name == "autoattack" else [eps / 2, eps]  # the ensemble is the slow one
    factory = robust_accuracy(clf, (x, y), lambda e: make_attack(name, "Linf", e, 2), grid, batch_size=6,
                              progress=False)
    assert factory.eps == grid and factory.attack == attack.name
