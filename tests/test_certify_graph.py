"""Bounds follow the computation forward really runs (issue: unsound bounds of wrapper models): the traced graph,
its self-check, and refusals of what it cannot follow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hostile import NegatedOutput, ShiftedInput
from torch import nn

from robustlens import Classifier, ConfigError, RobustLensError
from robustlens.attacks import PGD
from robustlens.certify import crown_bounds, interval_bounds, trace_bound_graph
from robustlens.norms import random_in_ball
from robustlens.seeding import SampleRNG

SHAPE = (1, 4, 4)


def _x(n: int = 6, seed: int = 1) -> torch.Tensor:
    return 0.1 + 0.8 * torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _inside(clf: Classifier, x: torch.Tensor, eps: float, b, reps: int = 200) -> None:
    """The logits of ``reps`` random points of the Linf ball (clipped to [0, 1]) around each input lie in ``b``."""
    xs = x.repeat(reps, 1, 1, 1)
    pts = (xs + random_in_ball(xs, float("inf"), eps, SampleRNG(0, n=xs.shape[0]))).clamp(0, 1)
    z = clf.logits(pts, validate=False).view(reps, x.shape[0], -1)
    assert bool((z >= b.lower - 1e-5).all()) and bool((z <= b.upper + 1e-5).all())


@pytest.mark.parametrize("wrapper", [ShiftedInput, NegatedOutput], ids=["shifted-input", "negated-output"])
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_wrapper_forward_gets_the_bounds_of_its_flat_sequential(wrapper, method: str) -> None:
    """``forward = layers((x - 0.5) * 20)`` once got a false certificate and ``-layers(x)`` bounds that every
    sample violated; both now get exactly the bounds of the equivalent flat Sequential, which contain the outputs."""
    model = wrapper()
    clf, flat = Classifier(model.eval(), input_shape=SHAPE), Classifier(model.flat().eval(), input_shape=SHAPE)
    x = _x()
    y = clf.predict(x)
    fn = interval_bounds if method == "ibp" else crown_bounds
    for eps in (0.0085, 0.01, 0.05):
        got, ref = fn(clf, x, eps, "inf", y), fn(flat, x, eps, "inf", y)
        assert torch.equal(got.lower, ref.lower) and torch.equal(got.upper, ref.upper)
        assert torch.equal(got.margin_lower, ref.margin_lower)
        _inside(clf, x, eps, got)


def test_no_certified_sample_of_the_shifted_wrapper_is_broken_by_pgd() -> None:
    """The issue's case: a sample "certified" at Linf 0.01 that PGD broke at 0.0085. Every certificate now holds
    against PGD, and PGD's worst-case logits stay inside the bounds."""
    clf = Classifier(ShiftedInput().eval(), input_shape=SHAPE)
    x = _x(16, seed=3)
    y = clf.predict(x)
    for eps in (0.0085, 0.01, 0.03):
        b = interval_bounds(clf, x, eps, "inf", y)
        res = PGD(norm="inf", eps=eps, steps=40, restarts=2)(clf, x, y, seed=0)
        assert not bool((res.success & b.certified).any())
        z = clf.logits(res.adversarial)
        assert bool((z >= b.lower - 1e-5).all()) and bool((z <= b.upper + 1e-5).all())


def test_the_classifiers_normalization_is_part_of_the_graph() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    clf = Classifier(net, mean=0.4, std=0.2, input_shape=SHAPE)
    graph = trace_bound_graph(clf, _x())
    assert graph.kinds() == ["input", "affine", "affine", "affine", "affine", "relu", "affine"]
    flat = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    flat.load_state_dict(net.state_dict())

    class Manual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = flat

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net((x - 0.4) / 0.2)

    x, y = _x(), clf.predict(_x())
    a = interval_bounds(clf, x, 0.02, "inf", y)
    b = interval_bounds(Classifier(Manual().eval(), input_shape=SHAPE), x, 0.02, "inf", y)
    torch.testing.assert_close(a.lower, b.lower, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a.margin_lower, b.margin_lower, rtol=1e-6, atol=1e-6)


class Residual(nn.Module):
    """A residual block with BatchNorm, average pooling and a view: ``relu(bn(conv(x)) + x)`` then a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.bn = nn.BatchNorm2d(1)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x)) + x)
        return self.head(self.pool(h).view(h.size(0), -1))


def _residual() -> nn.Module:
    torch.manual_seed(2)
    m = Residual()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 1.5)
    return m.eval()


def test_residual_add_is_followed_and_sound() -> None:
    clf = Classifier(_residual(), input_shape=SHAPE)
    x = _x()
    y = clf.predict(x)
    for fn in (interval_bounds, crown_bounds):
        b = fn(clf, x, 0.05, "inf", y)
        _inside(clf, x, 0.05, b)


class Sorted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.sort(x.flatten(1), 1).values)


class Branch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lin(x.flatten(1))
        if z.sum() > 0:  # control flow on the input's values
            return z
        return -z


class Product(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(16, 3), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x.flatten(1)) * self.b(x.flatten(1))


class Counter(nn.Module):
    """Forward depends on Python state the trace bakes in as a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 3)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.lin(x.flatten(1)) * self.calls


class Swish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 3)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.lin(x.flatten(1)))


@pytest.mark.parametrize("model, message", [
    (Sorted, r"cannot follow function torch.sort .*traced node 'sort'.*randomized smoothing"),
    (Branch, r"tracing it with torch.fx, and tracing failed.*control flow that depends on the input's values"),
    (Product, r"cannot follow function mul .*product or quotient of two values"),
    (Counter, r"does not reproduce the model's logits"),
    (Swish, r"cannot follow module SiLU 'act'"),
])
@pytest.mark.parametrize("method", ["ibp", "crown"])
def test_what_cannot_be_followed_is_refused_by_name(model, message: str, method: str) -> None:
    fn = interval_bounds if method == "ibp" else crown_bounds
    with pytest.raises(RobustLensError, match=message):
        fn(model().eval(), _x(), 0.01, "inf")


def test_random_or_stochastic_forwards_are_refused() -> None:
    class DropoutOn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(F.dropout(x.flatten(1), 0.2, training=True))

    with pytest.raises(ConfigError, match="dropout active at evaluation"):
        interval_bounds(DropoutOn(), _x(), 0.01)
    clf = Classifier(DropoutOn(), input_shape=SHAPE, stochastic=True)
    with pytest.raises(ConfigError, match="declared stochastic"):
        crown_bounds(clf, _x(), 0.01)
    train_bn = nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)).train()
    with pytest.raises(ConfigError, match="eval mode"):
        interval_bounds(train_bn, _x(), 0.1)
