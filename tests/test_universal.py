"""Universal perturbations (eq. 17): on a model with a planted shared direction the UAP finds that direction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustlens import Classifier
from robustlens.attacks.universal import UniversalPerturbation, fooling_rate, random_fooling_rate
from robustlens.errors import ConfigError

D, C = 48, 5


class Planted(nn.Module):
    """A random tanh network plus a strong shared direction u that raises the logit of class 0.

    Class 0 starts 3 logits down, so clean inputs are never class 0 and the nearest boundary of every input lies
    along u: all minimal perturbations share that direction.
    """

    def __init__(self, seed: int = 0, strength: float = 20.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = nn.Linear(D, 32)
        self.l2 = nn.Linear(32, C)
        with torch.no_grad():
            self.l1.weight.copy_(torch.randn(32, D, generator=g) / D**0.5)
            self.l2.weight.copy_(torch.randn(C, 32, generator=g) * 0.3)
            self.l2.bias.zero_()
            self.l2.bias[0] = -3.0
            self.l1.bias.zero_()
        u = torch.randn(D, generator=g)
        self.register_buffer("u", u / u.norm())
        self.register_buffer("e0", torch.eye(C)[0])  # a buffer, not one_hot: torch.func (HVPs) can map over it
        self.strength = strength

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.l2(torch.tanh(self.l1(x)))
        bump = self.strength * (x @ self.u)
        return z + self.e0 * bump[..., None]


def _data(model: Planted, n: int, seed: int) -> torch.Tensor:
    x = torch.rand(n, D, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    x = x - (x @ model.u)[:, None] * model.u  # no component along u: the clean decision ignores the bump
    return x.clamp(-1, 1)


def test_uap_finds_the_planted_direction() -> None:
    model = Planted()
    clf = Classifier(model, bounds=(-3.0, 3.0))
    x_fit, x_test = _data(model, 120, 1), _data(model, 200, 2)
    clean = clf.predict(x_test)
    not_target = float((clean != 0).float().mean())
    uap = UniversalPerturbation(norm=2, eps=0.3, delta=0.1, max_passes=3, batch_size=16, progress=False)
    res = uap.fit(clf, x_fit, seed=0)
    v = res.perturbation
    cos = float(v @ model.u / v.norm())
    assert cos > 0.9  # a random direction has |cos| ~ 1/sqrt(D) = 0.14
    assert float(v.norm()) <= 0.3 + 1e-5
    rate = fooling_rate(clf, x_test, v)
    assert not_target == 1.0
    assert rate >= 0.9  # everything not already class 0 is pushed to class 0
    assert rate > 5 * random_fooling_rate(clf, x_test, 2, 0.3, seed=0)
    assert res.energy_fraction(model.u[:, None]) == pytest.approx(cos**2, rel=1e-5)
    again = uap.fit(clf, x_fit, seed=0)
    assert torch.equal(again.perturbation, v)  # seeded data order: same numbers


def test_uap_linf_respects_the_ball_and_rejects_bad_settings() -> None:
    model = Planted(seed=1)
    clf = Classifier(model, bounds=(-3.0, 3.0))
    x = _data(model, 60, 3)
    res = UniversalPerturbation(norm="inf", eps=0.4, delta=0.2, max_passes=2, progress=False).fit(clf, x, seed=2)
    assert float(res.perturbation.abs().max()) <= 0.4 + 1e-6
    assert res.fooling_rate == pytest.approx(fooling_rate(clf, x, res.perturbation))
    assert len(res.history) == res.passes >= 1
    with pytest.raises(ConfigError):
        UniversalPerturbation(norm=1, eps=1.0)
    with pytest.raises(ConfigError):
        UniversalPerturbation(norm=2, eps=1.0, delta=1.5)


def test_uap_energy_lies_in_the_high_curvature_subspace() -> None:
    """Sec. II-C: the UAP's energy concentrates in the top input-Hessian eigenvectors (here the planted direction
    carries the curvature of the loss, s^2 p0 (1 - p0) u u^T), far above the k / D of a random vector."""
    from robustlens.geometry import hessian_eigenpairs

    model = Planted()
    clf = Classifier(model, bounds=(-3.0, 3.0))
    x = _data(model, 120, 1)
    res = UniversalPerturbation(norm=2, eps=0.3, delta=0.1, max_passes=3, batch_size=16, progress=False).fit(
        clf, x, seed=0
    )
    k = 3
    spec = hessian_eigenpairs(clf, x[:8], k=k, which="top", progress=False)
    assert spec.top_vectors is not None
    energy = torch.tensor([res.energy_fraction(spec.top_vectors[i].reshape(k, D).T) for i in range(8)])
    assert float(energy.median()) > 0.85 > 10 * k / D
    random = torch.randn(D, generator=torch.Generator().manual_seed(5))
    basis = spec.top_vectors[0].reshape(k, D).T
    assert float((basis.T @ random).pow(2).sum() / random.pow(2).sum()) < 0.5  # a random vector does not


def test_uap_returns_the_best_pass_not_the_last() -> None:
    """On a random tanh network a fixed budget cannot fool most inputs and passes undo each other: the result is
    the perturbation of the pass with the highest fooling rate on the fitting data."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(D, 64), nn.Tanh(), nn.Linear(64, C))
    clf = Classifier(model, bounds=(-3.0, 3.0))
    x = torch.rand(80, D, generator=torch.Generator().manual_seed(4)) * 2 - 1
    res = UniversalPerturbation(norm=2, eps=0.3, delta=0.0, max_passes=6, batch_size=8, progress=False).fit(
        clf, x, seed=1)
    assert res.passes == 6 and len(res.history) == 6
    assert res.history[-1] < max(res.history)  # the last pass lost ground (0.025 against 0.21 at best)
    assert res.fooling_rate == pytest.approx(max(res.history))
    assert res.fooling_rate == pytest.approx(fooling_rate(clf, x, res.perturbation))
