"""The worst-case corruption search: strength 0 is the image and strength 1 the benchmark's severity 5 (the same
draws); on a linear model under contrast, whose margin is affine in the strength, the grid finds the first grid
point past the closed-form breaking strength; the worst case bounds the fixed-strength accuracy from below."""

from __future__ import annotations

import pytest
import torch
from models import Affine

from robustlens import Classifier, ConfigError
from robustlens.shift import corrupt, corrupt_at, worst_case_corruption
from robustlens.shift.worst_case import PARAMETRIC


@pytest.mark.parametrize("name", list(PARAMETRIC))
def test_strength_ends_are_identity_and_severity_5(name: str) -> None:
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(corrupt_at(x, name, 0.0, seed=4), x)
    torch.testing.assert_close(corrupt_at(x, name, 1.0, seed=4), corrupt(x, name, 5, seed=4), atol=1e-6, rtol=0)


def test_contrast_breaking_strength_matches_closed_form() -> None:
    g = torch.Generator().manual_seed(1)
    x = 0.25 + 0.5 * torch.rand(40, 1, 6, 6, generator=g)
    model = Affine(36, 3, seed=2, input_shape=(1, 6, 6))
    clf = Classifier(model.eval(), input_shape=(1, 6, 6))
    y = clf.predict(x)
    grid = 50
    r = worst_case_corruption(clf, x, y, corruptions=["contrast"], grid=grid, params="cifar")
    # x_t = m + a(t) (x - m), a(t) = 1 - (1 - 0.15) t: the logits are affine in t
    m = x.mean((2, 3), keepdim=True)
    ts = torch.linspace(0, 1, 2001, dtype=torch.float64)[1:]
    for i in range(len(x)):
        a = 1 - 0.85 * ts
        pts = (m[i] + a.view(-1, 1, 1, 1) * (x[i] - m[i])).float()
        wrong = model(pts).argmax(1) != y[i]
        exact = float(ts[wrong.nonzero()[0, 0]]) if bool(wrong.any()) else float("inf")
        got = float(r.breaking[i, 0])
        if exact == float("inf"):
            assert got == float("inf")
        else:  # the first grid point at or past the exact crossing (a crossing within 1e-3 of a grid point may tie)
            assert exact - 1e-3 <= got <= exact + 1 / grid + 1e-9, (i, exact, got)
    assert bool((r.worst_case_accuracy(1.0) <= r.fixed_accuracy[:, -1] + 1e-12).all())
    assert bool((r.worst_case_accuracy(1.0) <= r.fixed_accuracy.min(1).values + 1e-12).all())


def test_settings() -> None:
    clf = Classifier(Affine(36, 3).eval(), input_shape=(1, 6, 6))
    x = torch.rand(2, 1, 6, 6)
    with pytest.raises(ConfigError, match="choose one of"):
        worst_case_corruption(clf, x, corruptions=["elastic"])
    with pytest.raises(ConfigError, match="grid"):
        worst_case_corruption(clf, x, grid=0)
    with pytest.raises(ConfigError, match="strength"):
        corrupt_at(x, "fog", 1.5)
