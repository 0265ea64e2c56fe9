"""The one decision rule (robustlens.decision.decide) against hand-built cases on an affine model, and the final
attack call that routes every attack through it."""

from __future__ import annotations

import math

import pytest
import torch
from models import Affine
from torch import Tensor

from robustlens import Classifier, InputError
from robustlens.attacks import PGD, Attack, Criterion, decide
from robustlens.attacks.base import MinimalNormAttack
from robustlens.decision import ball_slack, clean_validity, stop
from robustlens.ops import best_other_class, finite_rows, logit_margin, per_sample


def affine_clf() -> tuple[Classifier, Tensor, Tensor]:
    """A 2-class affine model on 4 inputs: z_1 - z_0 = 4 x_0 - 2, so the boundary is x_0 = 0.5."""
    net = Affine(4, 2)
    with torch.no_grad():
        net.linear.weight.zero_()
        net.linear.bias.zero_()
        net.linear.weight[1, 0] = 4.0
        net.linear.bias[1] = -2.0
    clf = Classifier(net)
    x = torch.tensor([[0.2, 0.5, 0.5, 0.5], [0.3, 0.5, 0.5, 0.5], [0.9, 0.5, 0.5, 0.5]])
    return clf, x, torch.tensor([0, 0, 0])  # the third sample is misclassified


def test_margin_primitives_have_one_sign() -> None:
    z = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, float("nan")]])
    y = torch.tensor([0, 1])
    assert logit_margin(z[:1], y[:1]).tolist() == [1.0]  # positive while the decision is y
    assert logit_margin(z[:1], torch.tensor([2])).tolist() == [-1.0]
    assert math.isnan(float(logit_margin(z[1:], y[1:])))
    assert best_other_class(z[:1], y[:1]).tolist() == [2]
    assert finite_rows(z).tolist() == [True, False]
    assert per_sample(torch.ones(2), torch.ones(2, 3, 4)).shape == (2, 1, 1)
    crit = Criterion(y[:1])
    assert crit.margin(z[:1]).tolist() == [1.0]
    assert Criterion(y[:1], torch.tensor([2])).margin(z[:1]).tolist() == [1.0]  # max other (3) minus target (2)
    assert crit.boundary_weights(z[:1]).tolist() == [[[-1.0, 0.0, 1.0]]]  # z_2 - z_0 = -margin
    assert not bool(crit.is_adversarial(torch.tensor([[float("nan"), 1.0, 0.0]])).any())


def test_decide_accepts_only_real_successes() -> None:
    clf, x, y = affine_clf()
    crit = Criterion(y)
    cand = x.clone()
    cand[0, 0] = 0.6  # crosses the boundary: distance 0.4 in Linf
    cand[1, 0] = 0.45  # does not cross
    d = decide(clf, x, cand, crit, p=float("inf"))
    assert d.success.tolist() == [True, False, True]
    assert d.norm[0] == pytest.approx(0.4) and math.isinf(float(d.norm[1])) and float(d.norm[2]) == 0.0
    assert torch.equal(d.adversarial[1], x[1]) and d.clean_adversarial.tolist() == [False, False, True]
    # outside the eps-ball: refused and flagged
    d = decide(clf, x, cand, crit, p=float("inf"), eps=0.3)
    assert d.success.tolist() == [False, False, True] and d.outside.tolist() == [True, False, False]
    # on the ball's edge, within rounding: accepted
    edge = x.clone()
    edge[0, 0] = 0.2 + 0.4
    assert bool(decide(clf, x, edge, crit, p=float("inf"), eps=0.4).success[0])
    # outside the bounds
    out = cand.clone()
    out[0, 1] = 1.5
    assert decide(clf, x, out, crit, p=2.0).outside.tolist() == [True, False, False]
    assert bool(decide(clf, x, out, crit, p=2.0, bounds=False).success[0])
    # a stopped sample (NaN candidate) is never a success
    nan = stop(cand.clone(), torch.tensor([0]))
    d = decide(clf, x, nan, crit, p=2.0)
    assert d.success.tolist() == [False, False, True] and d.stopped.tolist() == [True, False, False]
    with pytest.warns(UserWarning, match="stopped on 1 of 3 samples"):
        d.warn("test")


def test_targeted_decision_and_slack() -> None:
    net = Affine(3, 3, seed=1)
    clf = Classifier(net)
    x = torch.rand(5, 3)
    pred = clf.predict(x)
    t = (pred + 1) % 3
    d = decide(clf, x, x.clone(), Criterion(pred, t), p=2.0)
    assert not bool(d.success.any())
    assert ball_slack(x, float("inf"), (0.0, 1.0)) == pytest.approx(torch.finfo(torch.float32).eps)
    assert ball_slack(x, 2.0, (0.0, 1.0)) == pytest.approx(torch.finfo(torch.float32).eps * 3**0.5)
    assert ball_slack(x, 0, (0.0, 1.0)) == 0.0


def test_clean_validity() -> None:
    z = torch.tensor([[1.0, 0.0], [float("nan"), 0.0]])
    with pytest.raises(InputError, match="NaN or Inf logits for 1 of 2 clean input"):
        clean_validity(z)
    assert clean_validity(z, "mark").tolist() == [True, False]


def test_the_call_cannot_be_overridden_and_rejects_points_outside_the_ball() -> None:
    with pytest.raises(TypeError, match="overrides Attack.__call__"):
        class Bad(MinimalNormAttack):  # noqa: F841
            def run(self, clf, x, criterion, rng):  # type: ignore[no-untyped-def]
                return x

            def __call__(self, *a, **k):  # type: ignore[no-untyped-def]
                return None

    class Overreach(PGD):
        """A buggy attack that steps far outside its ball."""

        def run(self, clf, x, criterion, rng):  # type: ignore[no-untyped-def]
            return (x + 0.45).clamp(0, 1)

    clf, x, y = affine_clf()
    with pytest.warns(UserWarning, match="outside the data bounds or the eps-ball"):
        res = Overreach(eps=0.1)(clf, x, y)
    assert res.success.tolist() == [False, False, True]
    assert isinstance(Overreach(eps=0.1), Attack)
