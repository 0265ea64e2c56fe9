"""Property tests of the public entry points on random shapes, values and settings (hypothesis, bounded examples).

The property is the same everywhere: an entry point either raises a clear robustlens error (a ``RobustLensError``
whose message is not empty) or returns a valid result: the right shapes, finite numbers, examples inside the
classifier's bounds and, for eps-bounded attacks, inside the eps ball. Never another exception, never NaN, never a
silent out-of-bounds example. Degenerate models (all-zero weights, so every gradient vanishes and every logit ties)
are part of the draws.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from robustlens import Classifier, RobustLensError
from robustlens.attacks import DeepFool
from robustlens.attacks.fgsm import FGSM
from robustlens.attacks.fmn import FMN
from robustlens.attacks.pgd import PGD
from robustlens.certify import Smoothed
from robustlens.geometry.noise import noise_error_rate
from robustlens.geometry.sections import cross_section
from robustlens.norms import lp_norm

# 25 fixed examples per property in the test suite; ROBUSTLENS_FUZZ_EXAMPLES=500 runs a longer, random search
_DEEP = int(os.environ.get("ROBUSTLENS_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_DEEP or 25, deadline=None, derandomize=not _DEEP, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def clear_error_or(fn: Callable[[], Any]) -> Any:
    """Run ``fn``: a robustlens error with a message is an acceptable outcome (returns ``None``); others fail."""
    try:
        return fn()
    except RobustLensError as e:
        assert str(e).strip(), "an error without a message"
        return None


@st.composite
def problems(draw: st.DrawFn, images: bool = False) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    """A small affine or ReLU model, bounds, and inputs inside the bounds (with some at the edges)."""
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    c = draw(st.integers(2, 5))
    n = draw(st.integers(1, 4))
    shape = (1, draw(st.integers(2, 5)), draw(st.integers(2, 5))) if images else (draw(st.integers(1, 7)),)
    d = math.prod(shape)
    kind = draw(st.sampled_from(["affine", "relu", "zero"]))
    layers: list[nn.Module] = [nn.Flatten()]
    layers += [nn.Linear(d, 6), nn.ReLU(), nn.Linear(6, c)] if kind == "relu" else [nn.Linear(d, c)]
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * draw(st.sampled_from([0.1, 1.0, 10.0])))
            if kind == "zero":
                p.zero_()
    low = draw(st.sampled_from([0.0, -1.0, -3.0]))
    high = low + draw(st.sampled_from([1.0, 2.0, 255.0]))
    fill = draw(st.sampled_from(["uniform", "low", "high", "mixed"]))
    u = torch.rand(n, *shape, generator=g)
    if fill == "low":
        u.zero_()
    elif fill == "high":
        u.fill_(1.0)
    elif fill == "mixed":
        u = u.round()
    x = low + (high - low) * u
    y = torch.randint(c, (n,), generator=g)
    return Classifier(net, bounds=(low, high), input_shape=shape), x, y


def check_attack_result(clf: Classifier, x: torch.Tensor, res: Any, eps: float | None) -> None:
    adv = res.adversarial
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert bool(torch.isfinite(adv).all()), "NaN or Inf in the adversarial examples"
    lo, hi = clf.bounds
    assert float(adv.min()) >= lo - 1e-6 and float(adv.max()) <= hi + 1e-6, "example outside the bounds"
    assert not bool(torch.isnan(res.norm).any())
    assert res.success.dtype == torch.bool and res.success.shape == (x.shape[0],)
    # success is a fact about the returned image; failures are returned as their clean inputs
    pred = clf.predict(adv)
    fooled = pred != res.labels if res.targets is None else pred == res.targets
    assert torch.equal(fooled, res.success)
    assert torch.equal(adv[~res.success], x[~res.success])
    if eps is not None:
        assert bool((lp_norm(adv - x, res.p) <= eps * (1 + 1e-5) + 1e-6).all()), "example outside the eps ball"


attack_specs = st.one_of(
    st.tuples(st.just("deepfool"), st.sampled_from([1, 2, "inf"]), st.just(None)),
    st.tuples(st.just("fmn"), st.sampled_from([1, 2, "inf"]), st.just(None)),
    st.tuples(st.just("fgsm"), st.sampled_from([1, 2, "inf"]), st.floats(0, 3)),
    st.tuples(st.just("pgd"), st.sampled_from([1, 2, "inf"]), st.floats(0, 3)),
)


def build(name: str, norm: Any, eps: float | None) -> Any:
    if name == "deepfool":
        return DeepFool(norm=norm, max_iter=5)
    if name == "fmn":
        return FMN(norm=norm, steps=5)
    if name == "fgsm":
        return FGSM(norm=norm, eps=eps, random_start=True)
    return PGD(norm=norm, eps=eps, steps=3)


@FUZZ
@given(problems(), attack_specs, st.sampled_from([None, "random", "least-likely"]), st.integers(0, 1000))
def test_attacks_give_valid_examples_or_clear_errors(problem: Any, spec: Any, target: Any, seed: int) -> None:
    clf, x, y = problem
    name, norm, eps = spec
    res = clear_error_or(lambda: build(name, norm, eps)(clf, x, y, target=target, seed=seed))
    if res is not None:
        check_attack_result(clf, x, res, eps)


@FUZZ
@given(problems(images=True), st.floats(0, 1), st.integers(0, 1000))
def test_pgd_on_images_stays_in_box_and_ball(problem: Any, eps_frac: float, seed: int) -> None:
    clf, x, y = problem
    eps = eps_frac * (clf.bounds[1] - clf.bounds[0])
    res = clear_error_or(lambda: PGD(eps=eps, steps=2)(clf, x, y, seed=seed))
    if res is not None:
        check_attack_result(clf, x, res, eps)


@FUZZ
@given(
    st.integers(0, 3),
    st.integers(1, 6),
    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool]),
    st.sampled_from(["ok", "nan", "inf", "big", "negative"]),
    st.one_of(st.none(), st.lists(st.integers(-2, 6), min_size=0, max_size=5)),
)
def test_classifier_validates_any_tensor(n: int, d: int, dtype: torch.dtype, poison: str, labels: Any) -> None:
    clf = Classifier(nn.Linear(4, 3), input_shape=(4,))
    x = torch.rand(n, d, generator=torch.Generator().manual_seed(n * 7 + d))
    if poison == "nan" and x.numel():
        x[0, 0] = float("nan")
    elif poison == "inf" and x.numel():
        x[-1, -1] = float("inf")
    elif poison == "big":
        x = x * 255
    elif poison == "negative":
        x = x - 1
    if dtype == torch.bool:
        x = x > 0.5
    elif dtype in (torch.int64, torch.uint8):
        x = x.nan_to_num(0, 255, 0).clamp(0, 255).to(dtype)
    else:
        x = x.to(dtype)
    y = None if labels is None else torch.tensor(labels, dtype=torch.long)

    def run() -> Any:
        if y is None:
            return clf.logits(x)
        return clf.loss_and_input_grad(x, y)

    out = clear_error_or(run)
    if out is not None:
        assert n > 0 and d == 4
        if y is None:
            assert out.shape == (n, 3) and bool(torch.isfinite(out).all())
        else:
            loss, grad = out
            assert loss.shape == (n,) and grad.shape == (n, 4)
            assert bool(torch.isfinite(loss).all() and torch.isfinite(grad).all())


@FUZZ
@given(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3)),
    st.one_of(st.sampled_from([0, 1, 2, 3, 0.5, -1, float("inf"), float("nan"), "l2", "Linf", "L7", "", "inf "]),
              st.floats(allow_nan=True)),
)
def test_attack_settings_are_checked(eps: Any, norm: Any) -> None:
    for make in (lambda: PGD(norm=norm, eps=eps, steps=1), lambda: FGSM(norm=norm, eps=eps),
                 lambda: DeepFool(norm=norm)):
        attack = clear_error_or(make)
        if attack is not None:
            assert attack.p == 0 or attack.p >= 1
            if hasattr(attack, "eps"):
                assert math.isfinite(attack.eps) and attack.eps >= 0


@FUZZ
@given(problems(), st.lists(st.floats(0, 50), min_size=1, max_size=3), st.integers(1, 8), st.booleans(),
       st.integers(0, 100))
def test_noise_error_rate_is_a_probability(problem: Any, sigmas: list[float], draws: int, clip: bool,
                                           seed: int) -> None:
    clf, x, _ = problem
    res = clear_error_or(lambda: noise_error_rate(clf, x, sigmas, n_draws=draws, clip=clip, seed=seed,
                                                  progress=False))
    if res is not None:
        for t in (res.error_rate, res.per_sample, res.ci_low, res.ci_high):
            assert bool(torch.isfinite(t).all()) and float(t.min()) >= 0 and float(t.max()) <= 1
        zero = torch.as_tensor(sigmas) == 0
        assert bool((res.error_rate[zero] == 0).all()), "noise of sigma 0 changed a decision"


@FUZZ
@given(problems(images=True), st.sampled_from([("random", "random"), ("gradient", "random"),
                                               ("adversarial", "random"), ("adversarial", "gradient")]),
       st.one_of(st.none(), st.floats(1e-3, 10)), st.integers(2, 5), st.integers(0, 100))
def test_cross_section_is_finite(problem: Any, directions: Any, extent: Any, res: int, seed: int) -> None:
    clf, x, y = problem
    out = clear_error_or(lambda: cross_section(clf, x[0], directions=directions, extent=extent, resolution=res,
                                               seed=seed, progress=False))
    if out is not None:
        assert out.labels.numel() == res * res
        assert bool(torch.isfinite(out.margins).all()) and bool(torch.isfinite(out.loss).all())
        assert int(out.labels.min()) >= 0 and int(out.labels.max()) < clf.num_classes


@FUZZ
@given(problems(), st.floats(1e-3, 20), st.integers(1, 30), st.floats(1e-4, 0.5), st.integers(1, 16),
       st.integers(0, 100))
def test_smoothed_predict_is_a_class_or_abstains(problem: Any, sigma: float, n: int, alpha: float, bs: int,
                                                 seed: int) -> None:
    clf, x, _ = problem
    res = clear_error_or(lambda: Smoothed(clf, sigma).predict(x, n=n, alpha=alpha, batch_size=bs, seed=seed))
    if res is not None:
        c = clf.num_classes
        assert res.prediction.shape == (x.shape[0],)
        assert bool(((res.prediction == -1) | ((res.prediction >= 0) & (res.prediction < c))).all())
        assert bool((res.counts.sum(1) == n).all())
        assert bool(torch.isfinite(res.pvalue).all())


@FUZZ
@given(st.integers(1, 12), st.integers(-1, 14), st.one_of(st.none(), st.lists(st.integers(-1, 12), max_size=8)),
       st.sets(st.integers(0, 12), max_size=4), st.integers(0, 50))
def test_runner_equals_direct_computation_after_any_partial_loss(n: int, batch_size: int, indices: Any,
                                                                  lost: set[int], seed: int) -> None:
    import tempfile
    from pathlib import Path

    from robustlens.runner import run_evaluation
    from robustlens.seeding import SampleRNG

    x = torch.rand(n, 3, generator=torch.Generator().manual_seed(n))

    def fn(bx: torch.Tensor, by: Any, bi: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"v": bx + SampleRNG(seed, bi).randn((3,))}

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        first = clear_error_or(lambda: run_evaluation(fn, x, state_dir=state, batch_size=batch_size, seed=seed,
                                                      indices=indices, progress=False))
        if first is None:
            return
        idx = torch.arange(n) if indices is None else torch.tensor(indices)
        direct = x[idx] + SampleRNG(seed, idx).randn((3,))
        assert torch.equal(first["v"], direct) and torch.equal(first.indices, idx)
        for b in lost:  # batches lost to a crash are recomputed on resume; the rest are read back
            (state / f"batch_{b:06d}.npz").unlink(missing_ok=True)
        again = run_evaluation(fn, x, state_dir=state, batch_size=batch_size, seed=seed, indices=indices,
                               resume=True, progress=False)
        assert torch.equal(again["v"], direct)


def test_fuzz_helper_lets_only_robustlens_errors_through() -> None:
    def boom() -> None:
        raise RuntimeError("raw")

    with pytest.raises(RuntimeError):
        clear_error_or(boom)
