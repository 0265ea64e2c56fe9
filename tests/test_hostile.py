"""The hostile-model matrix: every registered attack and analysis on every model of tests/hostile.py ends in a clear
error (a RobustLensError) or a correct result, never a raw traceback or a plausible number from a broken model.

The entry points are enumerated from the registries (``ATTACKS`` and ``robustlens.analyses.load_all()``), so an
attack or analysis registered later is covered without touching this file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hostile import EPS, HOSTILE, SHAPE, Hostile, inputs, layers
from test_determinism import flatten
from torch import Tensor

from robustlens import Classifier, InputError, RobustLensError, RobustLensWarning
from robustlens.analyses import ANALYSES, load_all
from robustlens.attacks import ATTACKS, AttackResult, DeepFool, make_attack
from robustlens.metrics import robust_accuracy
from robustlens.norms import lp_norm

load_all()
ENTRIES = [("attack", n) for n in ATTACKS] + [("analysis", n) for n in ANALYSES]


@dataclass
class Outcome:
    error: RobustLensError | None
    result: Any
    warnings: list[str]


def _labels(h: Hostile) -> Tensor:
    if h.name == "one-class":
        return torch.zeros(inputs().shape[0], dtype=torch.long)
    with torch.no_grad():
        return layers()(h.x()).argmax(1)


def run(kind: str, name: str, clf: Classifier, x: Tensor, y: Tensor, seed: int = 0) -> Any:
    if kind == "attack":
        meta = ATTACKS.entry(name).meta
        return make_attack(name, None, None if meta["minimal"] else EPS, 2)(clf, x, y, seed=seed)
    return ANALYSES.get(name).smoke(clf, x, y, seed)


def outcome(kind: str, name: str, clf: Classifier, x: Tensor, y: Tensor, seed: int = 0) -> Outcome:
    """Run one entry point; a RobustLensError is an outcome, any other exception fails the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = run(kind, name, clf, x, y, seed)
        except RobustLensError as e:
            return Outcome(e, None, [])
    return Outcome(None, res, [str(w.message) for w in caught if issubclass(w.category, RobustLensWarning)])


def _clf_plain() -> Classifier:
    return Classifier(layers(), input_shape=SHAPE, batch_size=3)


def needs_gradients(kind: str, name: str) -> bool:
    if kind == "attack":
        return not ATTACKS.get(name).gradient_free
    return ANALYSES.get(name).needs_gradients


def verify_attack(res: AttackResult, clf: Classifier, x: Tensor) -> None:
    """Every success of ``res`` is real: a finite point inside the bounds (and the eps-ball), misclassified by finite
    logits of ``clf`` recomputed here."""
    ok = res.success & res.clean_correct
    if not bool(ok.any()):
        return
    adv = res.adversarial[ok]
    assert bool(torch.isfinite(adv).all()), "a success with a non-finite example"
    lo, hi = clf.bounds
    if res.settings.get("clip", True):
        assert bool(((adv >= lo) & (adv <= hi)).all()), "a success outside the bounds"
    if res.eps is not None:
        assert bool((lp_norm(adv - x[ok], res.p) <= res.eps * (1 + 1e-5) + 1e-6).all()), "a success outside the ball"
    with torch.no_grad(), clf.analysis_mode():
        z = clf.decision_logits(adv)
    assert bool(torch.isfinite(z).all()), "a success decided on non-finite logits"
    wrong = z.argmax(1) != res.labels[ok] if res.targets is None else z.argmax(1) == res.targets[ok]
    assert bool(wrong.all()), "a success that does not fool the model when evaluated again"


def nan_leaves(result: Any) -> list[str]:
    """Keys of float leaves (and float tensors) of a result that hold NaN."""
    bad = []
    for k, v in flatten(result).items():
        if isinstance(v, str) and v == "nan":
            bad.append(k)
        elif isinstance(v, tuple) and len(v) == 3 and str(v[0]).startswith("torch.float"):
            dtype = getattr(torch, str(v[0]).removeprefix("torch."))
            t = torch.frombuffer(bytearray(v[2]), dtype=dtype) if v[2] else torch.empty(0)
            if bool(torch.isnan(t).any()):
                bad.append(k)
    return bad


def check_result(kind: str, name: str, out: Outcome, clf: Classifier, x: Tensor, *, allow_error: bool) -> None:
    if out.error is not None:
        assert allow_error, f"{name} raised on a model it should handle: {out.error}"
        return
    res = out.result
    if isinstance(res, AttackResult):
        verify_attack(res, clf, x)
    leaves = nan_leaves(res)
    assert not leaves or out.warnings, f"{name} returned NaN in {leaves[:5]} without a warning"


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e[1])
@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: h.name)
def test_clear_error_or_correct_result(hostile: Hostile, entry: tuple[str, str]) -> None:
    kind, name = entry
    x, y = hostile.x(), _labels(hostile)
    clf = hostile.make()
    out = outcome(kind, name, clf, x, y)
    if hostile.expect == "error":
        assert out.error is not None, f"{name} on {hostile.name} gave a result instead of an error: {out.result}"
        assert len(str(out.error)) > 40, "the error must say what is wrong and what to do"
    elif hostile.expect == "result":
        check_result(kind, name, out, clf, x, allow_error=hostile.name != "control")
    elif hostile.expect == "no-gradients":
        if needs_gradients(kind, name):
            assert out.error is not None and "gradient" in str(out.error), out
        else:
            check_result(kind, name, out, clf, x, allow_error=False)
    elif hostile.expect == "stopped":
        if not needs_gradients(kind, name):
            check_result(kind, name, out, clf, x, allow_error=True)
        elif out.error is None:
            res = out.result
            if isinstance(res, AttackResult) and res.stopped is None:
                # an attack whose iterates never touch a zero pixel (C&W's tanh box) meets finite gradients only:
                # then it must do as well as on the same function without the sqrt
                check_result(kind, name, out, clf, x, allow_error=False)
                plain = outcome(kind, name, Hostile("plain", lambda: _clf_plain()).make(), x, y)
                assert int(res.success.sum()) >= int(plain.result.success.sum()) - 1, (
                    f"{name} neither stopped on the NaN gradients nor found what it finds without them")
            elif isinstance(res, AttackResult):
                with pytest.raises(InputError, match="robust accuracy is unknown"):
                    res.robust_accuracy(None if res.eps is not None else [EPS])
                assert out.warnings, f"{name} stopped on NaN gradients without a warning"
            else:
                assert out.warnings, f"{name} met NaN gradients without a warning or an error"
    elif hostile.expect == "stochastic":
        again = outcome(kind, name, hostile.make(), x, y)
        assert (out.error is None) == (again.error is None)
        if out.error is None:
            a, b = flatten(out.result), flatten(again.result)
            assert a == b, f"{name}: the same seed gave different results on a declared stochastic model"
            if isinstance(out.result, AttackResult) and out.result.eps is not None:
                # a minimal-norm example sits on the boundary of the majority decision: it fools about half the
                # draws by design; an eps-bounded one must fool most of them
                check_fools_fresh_draws(out.result, hostile)
    elif hostile.expect == "same-as-reference":
        assert hostile.reference is not None
        ref = outcome(kind, name, hostile.reference(), x, y)
        if ref.error is not None or out.error is not None:
            assert type(ref.error) is type(out.error), (out.error, ref.error)
        else:
            assert flatten(out.result) == flatten(ref.result), f"{name} on {hostile.name} differs from its reference"
    else:  # pragma: no cover
        raise AssertionError(hostile.expect)


def check_fools_fresh_draws(res: AttackResult, hostile: Hostile, draws: int = 31) -> None:
    """On average, the examples of a declared stochastic model fool most fresh draws of its randomness."""
    ok = res.success & res.clean_correct
    if not bool(ok.any()):
        return
    clf = hostile.make()
    clf.draws = draws
    with clf.random_state(12345):
        votes = torch.zeros(int(ok.sum()))
        with torch.no_grad(), clf.analysis_mode():
            for _ in range(draws):
                votes += (clf.forward(res.adversarial[ok]).argmax(1) != res.labels[ok]).float()
    assert float(votes.mean()) / draws >= 0.5, f"the examples fool only {float(votes.mean()) / draws:.0%} of draws"


# ------------------------------------------------------------------------------------------ the cases of the issue
def test_sqrt_preprocessing_never_reads_as_robust() -> None:
    """Issue 13: NaN gradients at zero pixels once made DeepFool report 0.94 robust accuracy instead of 0.56. The
    samples are stopped, and robust accuracy is refused with a message that names the cause."""
    from hostile import SqrtSquared

    x = inputs(zeros=True)
    clf = Classifier(SqrtSquared(), input_shape=SHAPE)
    with pytest.warns(RobustLensWarning, match="sqrt or log at 0"):
        res = DeepFool(norm=2)(clf, x)
    assert res.stopped is not None and bool(res.stopped.all())
    assert not bool(res.success.any())
    with pytest.raises(InputError, match="robust accuracy is unknown.*sqrt"):
        res.robust_accuracy([0.1])
    with pytest.raises(InputError, match="robust accuracy is unknown"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RobustLensWarning)
        robust_accuracy(clf, (x, clf.predict(x)), DeepFool(norm=2), [0.1], progress=False)
    plain = DeepFool(norm=2)(Classifier(layers(), input_shape=SHAPE), x)
    assert bool(plain.success.all()) and plain.stopped is None


def test_invalid_mark_skips_non_finite_clean_rows() -> None:
    from hostile import NaNAtClean

    x = inputs()
    bad = x.flatten(1)[:, 0] < 0.5
    assert bool(bad.any()) and not bool(bad.all())
    clf = Classifier(NaNAtClean(), input_shape=SHAPE)
    with pytest.raises(InputError, match="NaN or Inf logits for .* clean input.*invalid='mark'"):
        DeepFool()(clf, x)
    res = DeepFool()(clf, x, invalid="mark")
    assert res.invalid is not None and torch.equal(res.invalid, bad)
    assert not bool((res.success & bad).any()) and not bool((res.clean_correct & bad).any())
    assert bool(res.success[~bad].all())
    with pytest.raises(InputError, match="NaN or Inf logits"):
        clf.accuracy(x, torch.zeros(x.shape[0], dtype=torch.long))
