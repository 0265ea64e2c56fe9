"""Randomized smoothing against closed forms: an affine binary classifier's exact L2 distance, the binomial tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models import Affine, affine_distance
from scipy import stats
from settings_props import edge_invalid, invalid_values, valid_values

from robustlens import Classifier, ConfigError
from robustlens.certify import (
    CertifyResult,
    Smoothed,
    binomial_two_sided_pvalue,
    certify_dataset,
    clopper_pearson_lower,
)
from robustlens.checks import declared_checks, numeric_parameters


def test_clopper_pearson_matches_statsmodels_and_scipy():
    proportion_confint = pytest.importorskip("statsmodels.stats.proportion").proportion_confint
    for n in (1, 10, 100, 1000, 100_000):
        ks = np.unique(np.linspace(0, n, 13).astype(int))
        for alpha in (0.001, 0.05):
            ours = clopper_pearson_lower(ks, n, alpha)
            sm = np.array([proportion_confint(k, n, alpha=2 * alpha, method="beta")[0] for k in ks])
            np.testing.assert_allclose(ours, np.nan_to_num(sm), rtol=1e-10, atol=1e-14)
            sp = np.array([stats.binomtest(int(k), n).proportion_ci(1 - 2 * alpha, method="exact").low for k in ks])
            np.testing.assert_allclose(ours, sp, rtol=1e-10, atol=1e-14)


def test_binomial_pvalue_matches_scipy_binomtest():
    for n in (1, 2, 7, 50, 999):
        for k in range(0, n + 1, max(1, n // 9)):
            assert binomial_two_sided_pvalue(np.array(k), np.array(n)) == pytest.approx(
                stats.binomtest(k, n, 0.5).pvalue, rel=1e-9, abs=1e-300)


def _binary_problem(sigma: float, m: int = 16, d: int = 8):
    """Points of an affine 2-class model whose exact L2 distance to the boundary lies in (0.1, 1.5) sigma."""
    model = Affine(d, 2, seed=3)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, d, generator=g, dtype=torch.float32)
    dist = affine_distance(model, x, 2.0)
    keep = ((dist > 0.1 * sigma) & (dist < 1.5 * sigma)).nonzero().flatten()[:m]
    assert keep.numel() == m
    x = x[keep]
    return Classifier(model), x, dist[keep].double(), model(x).argmax(1)


def test_affine_radius_never_exceeds_exact_distance_and_approaches_it():
    sigma = 0.5
    clf, x, dist, cls = _binary_problem(sigma)
    sm = Smoothed(clf, sigma)
    gaps = []
    for n in (1_000, 10_000, 100_000):
        r = sm.certify(x, cls, n0=100, n=n, alpha=0.001, batch_size=8192, seed=1)
        assert isinstance(r, CertifyResult)
        ok = ~r.abstained
        assert bool((r.prediction[ok] == cls[ok]).all())  # a certified class is the base model's side
        assert bool((r.radius <= dist + 1e-9).all()), (r.radius - dist).max()  # the certificate is sound
        gaps.append(float((dist - r.radius).mean()))
    assert gaps[0] > gaps[1] > gaps[2]
    # with n = 1e5 every point is certified and the radius is within a few hundredths of sigma of the truth
    r = sm.certify(x, cls, n0=100, n=100_000, alpha=0.001, batch_size=8192, seed=1)
    assert not bool(r.abstained.any())
    assert float((dist - r.radius).max()) < 0.05 * sigma
    # the estimated probability matches the closed form P(f(x+e) = c) = Phi(d / sigma)
    p_true = stats.norm.cdf(dist.numpy() / sigma)
    np.testing.assert_allclose(r.count.numpy() / 100_000, p_true, atol=0.006)


def test_predict_abstains_on_the_boundary_and_is_right_far_from_it():
    model = Affine(4, 2, seed=1)
    w = (model.W[0] - model.W[1]).double()
    b = float(model.b[0] - model.b[1])
    centre = torch.full((4,), 0.5, dtype=torch.float64)
    on = centre - (centre @ w + b) / (w @ w) * w  # projection onto the hyperplane
    far = on + 0.8 * w / w.norm()  # 0.8 from the boundary on class 0's side
    x = torch.stack([on, far]).float()
    res = Smoothed(Classifier(model, check_bounds=False), 0.1).predict(x, n=2000, alpha=0.001, seed=0)
    assert res.prediction.tolist() == [-1, 0]
    assert float(res.pvalue[0]) > 0.001 and float(res.pvalue[1]) < 1e-100
    assert res.counts.sum(1).tolist() == [2000, 2000]


def test_counts_do_not_depend_on_batch_size_or_data_batching(tmp_path: Path):
    clf, x, _, cls = _binary_problem(0.25, m=6)
    sm = Smoothed(clf, 0.25)
    a = sm.counts(x, 3000, batch_size=7, seed=4, indices=range(10, 16))
    b = sm.counts(x, 3000, batch_size=5000, seed=4, indices=range(10, 16))
    assert torch.equal(a, b) and a.sum(1).tolist() == [3000] * 6
    c = sm.counts(x[3:], 3000, batch_size=100, seed=4, indices=range(13, 16))
    assert torch.equal(a[3:], c)  # a sample's draws follow its dataset index, not its position in the batch
    whole = sm.certify(x, cls, n0=50, n=2000, seed=2, indices=range(6))
    ds = certify_dataset(sm, (x, cls), n0=50, n=2000, seed=2, data_batch_size=4, batch_size=333,
                         state_dir=str(tmp_path / "s"), progress=False)
    for k in ("prediction", "radius", "p_lower", "count", "labels"):
        assert torch.equal(getattr(whole, k), getattr(ds, k)), k


def test_cpu_noise_parts_do_not_depend_on_the_number_of_threads():
    """A CPU block is drawn as fixed parts (parallel when threads allow): same draws with 1 or 2 threads, each part
    its own stream, and standard normal."""
    from robustlens.certify.smoothing import CPU_NOISE_PARTS, NOISE_BLOCK, _BlockNoise

    threads = torch.get_num_threads()
    blocks = {}
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            source = _BlockNoise(torch.device("cpu"), CPU_NOISE_PARTS)
            assert (source.pool is None) == (t == 1)
            blocks[t] = source.fill(torch.empty(NOISE_BLOCK, 3, 8, 8), 5, "smoothing", 7, "estimate", 0)
            source.close()
        clf, x, _, _ = _binary_problem(0.25, m=3)
        sm = Smoothed(clf, 0.25)
        torch.set_num_threads(1)
        one = sm.counts(x, 2500, batch_size=300, seed=3)
        torch.set_num_threads(2)
        two = sm.counts(x, 2500, batch_size=300, seed=3)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(blocks[1], blocks[2]) and torch.equal(one, two)
    parts = blocks[1].tensor_split(CPU_NOISE_PARTS)
    assert not torch.equal(parts[0], parts[1])  # separate streams, not one stream repeated
    z = blocks[1].flatten().double()
    assert abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01


def test_certified_accuracy_curve_and_plot(tmp_path: Path):
    labels = torch.tensor([0, 1, 1, 0])
    radius = torch.tensor([0.3, 0.7, 0.0, 0.9], dtype=torch.float64)
    r = CertifyResult(prediction=torch.tensor([0, 1, -1, 1]), radius=radius,
                      p_lower=torch.tensor([0.6, 0.8, 0.4, 0.9]), count=torch.tensor([1, 1, 1, 1]),
                      labels=labels, sigma=0.5, n0=1, n=1, alpha=0.01, seed=0)
    # correct & certified: samples 0 (r=0.3) and 1 (r=0.7); 2 abstains; 3 is wrong
    assert r.certified_accuracy([0.0, 0.3, 0.5, 0.7, 0.8]).tolist() == [0.5, 0.5, 0.25, 0.25, 0.0]
    curve = r.curve()
    assert bool((curve.accuracy[1:] <= curve.accuracy[:-1]).all()) and curve.abstain_rate == 0.25
    ax = curve.plot()
    ax.figure.savefig(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000
    r.save(tmp_path / "cert.json")
    back = CertifyResult.load(tmp_path / "cert.json")
    assert torch.equal(back.radius, r.radius) and back.sigma == 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sigma": 0.0}, "Smoothed: sigma must be a finite number > 0, got 0.0"),
        ({"sigma": float("nan")}, "sigma must be a finite number > 0"),
        ({"alpha": 1.5}, r"Smoothed.certify: alpha must be a finite number in \(0, 1\)"),
        ({"n": 0}, "n must be an integer >= 1"),
        ({"n0": 2.5}, r"n0 must be an integer >= 1, got 2.5 \(not a whole number\)"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str):
    clf = Classifier(Affine(3, 2))
    sigma = kwargs.pop("sigma", 0.5)
    with pytest.raises(ConfigError, match=message):
        Smoothed(clf, sigma).certify(torch.rand(2, 3), None, **{"n0": 10, "n": 10, **kwargs})


def _smoothing_entries() -> list[tuple[str, Any, dict[str, Any]]]:
    """``(name, call, fixed keyword arguments)`` of every smoothing entry point with declared settings."""
    clf, x = Classifier(Affine(3, 2)), torch.rand(2, 3, generator=torch.Generator().manual_seed(0))
    sm = Smoothed(clf, 0.5)
    small = {"n0": 4, "n": 8, "batch_size": 16}
    return [
        ("Smoothed", lambda **kw: Smoothed(clf, **kw), {"sigma": 0.5}),
        ("certify", lambda **kw: sm.certify(x, **kw), small),
        ("predict", lambda **kw: sm.predict(x, **kw), {"n": 8, "batch_size": 16}),
        ("counts", lambda **kw: sm.counts(x, **kw), {"num": 8, "batch_size": 16}),
        ("certify_dataset", lambda **kw: certify_dataset(sm, (x, None), progress=False, **kw), small),
    ]


SMOOTHING_RULES = {"Smoothed": Smoothed, "certify": Smoothed.certify, "predict": Smoothed.predict,
                   "counts": Smoothed.counts, "certify_dataset": certify_dataset}
SMOOTHING_CASES = [(name, param, rule) for name, fn in SMOOTHING_RULES.items()
                   for param, rule in sorted(declared_checks(fn).items())]


def test_every_numeric_smoothing_setting_is_declared():
    for name, fn in SMOOTHING_RULES.items():
        declared = set(declared_checks(fn))
        numeric = set(numeric_parameters(fn)) - {"seed"}
        assert numeric <= declared, f"{name}: declare {sorted(numeric - declared)} with @checked"
    assert {"sigma"} <= set(declared_checks(Smoothed)) and {"n0", "n", "alpha"} <= set(declared_checks(
        Smoothed.certify))


@pytest.mark.parametrize("case", SMOOTHING_CASES, ids=lambda c: f"{c[0]}.{c[1]}")
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_smoothing_settings_in_range_run_and_outside_are_refused(case, data: st.DataObject):
    name, param, rule = case
    call, fixed = {n: (c, f) for n, c, f in _smoothing_entries()}[name]
    for bad in [*edge_invalid(rule), data.draw(invalid_values(rule), "invalid")]:
        with pytest.raises(ConfigError, match=param):
            call(**{**fixed, param: bad})
    good = data.draw(valid_values(rule), "valid")
    if rule.integer:
        good = min(good, 64)  # a valid count, kept small
    call(**{**fixed, param: good})
