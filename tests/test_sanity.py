"""Gradient-masking checks: each flag fires on a model built to trigger it and stays quiet on smooth models."""

from __future__ import annotations

import pytest
import torch
from models import Affine
from torch import nn

from robustlens.attacks.sanity import SanityReport, gradient_masking_checks
from robustlens.classifier import Classifier
from robustlens.errors import ConfigError
from robustlens.results import Result

FLAGS = ("monotone_eps", "unbounded", "one_step_vs_iterative", "black_box_vs_white_box")


class Profile(nn.Module):
    """Two classes whose logit difference is a fixed function ``m`` of ``t = mean(x) - 0.5``.

    With ``||grad t||_1 = 1`` an Linf perturbation of size eps moves ``t`` by at most eps, so the geometry along
    ``t`` is known exactly. ``m`` may be non-differentiable or misleading: that is how masking is built here.
    """

    def __init__(self, profile) -> None:
        super().__init__()
        self.profile = profile
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(1).mean(1) - 0.5
        m = self.profile(t) * self.scale
        return torch.stack([torch.zeros_like(m), m], 1)


def images(n: int = 24, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + 0.05 * torch.randn(n, 1, 8, 8, generator=g)
    return (x - x.flatten(1).mean(1).view(-1, 1, 1, 1) + 0.5).clamp(0, 1)  # mean exactly 0.5: t = 0


def run(model: nn.Module, x: torch.Tensor, eps: float, **kw) -> SanityReport:
    clf = Classifier(model, bounds=(0.0, 1.0), allow_parameterless=True)
    return gradient_masking_checks(clf, x, eps=eps, steps=10, square_queries=300, seed=0, **kw)


def test_smooth_affine_models_raise_no_flag(tmp_path) -> None:
    for c in (2, 10):
        m = Affine(64, c, seed=c, input_shape=(1, 8, 8))
        g = torch.Generator().manual_seed(c)
        x = torch.rand(30, 1, 8, 8, generator=g) * 0.5 + 0.25
        rep = run(m, x, eps=0.03)
        assert not rep.flagged, rep.summary()
        assert [ch.name for ch in rep.checks] == list(FLAGS)
        assert rep["unbounded"].values["success"] == 1.0
        assert Result.load(rep.save(tmp_path / f"r{c}.json")).flagged is False


def test_zero_gradient_flags_unbounded_and_black_box() -> None:
    """Quantised inputs (torch.round): the gradient is zero everywhere, yet the decision does change."""

    class Quantised(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Affine(64, 2, seed=1, input_shape=(1, 8, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(torch.round(x * 8) / 8)

    g = torch.Generator().manual_seed(3)
    x = torch.rand(30, 1, 8, 8, generator=g) * 0.5 + 0.25
    rep = run(Quantised(), x, eps=0.1)
    assert rep["unbounded"].flagged, rep.summary()
    assert rep["black_box_vs_white_box"].flagged, rep.summary()
    assert rep["black_box_vs_white_box"].values["square"] > 0.5
    assert not rep["one_step_vs_iterative"].flagged  # both gradient attacks are blind here
    assert "Square" in rep["unbounded"].message


def test_flat_region_beyond_a_narrow_band_flags_non_monotone_success() -> None:
    """Adversarial only for t in [0.10, 0.12]; beyond it the logits are flat (zero gradient). PGD at eps in the band
    always succeeds; with larger eps its steps jump over the band into the flat region and stay there."""

    def band(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t > 0.12, torch.full_like(t, -1.0), t - 0.10)

    rep = run(Profile(band), images(), eps=0.11)
    mono = rep["monotone_eps"]
    assert mono.flagged, rep.summary()
    assert mono.values["success"][mono.values["eps"].index(0.11)] == 1.0
    assert rep["unbounded"].flagged
    assert not rep["one_step_vs_iterative"].flagged


def test_local_trap_flags_one_step_beating_iterative() -> None:
    """A local maximum of the margin at t = 0.02 traps small PGD steps; one FGSM step jumps over it."""

    def trap(t: torch.Tensor) -> torch.Tensor:
        return torch.where(t < 0.1, -0.5 - (t - 0.02).abs(), 10 * (t - 0.15))

    rep = run(Profile(trap), images(), eps=0.2)
    one = rep["one_step_vs_iterative"]
    assert one.flagged, rep.summary()
    assert one.values["fgsm"] == 1.0 and one.values["pgd"] < 0.5


def test_skips_and_bad_settings() -> None:
    m = Affine(16, 2, seed=0)
    clf = Classifier(m, bounds=(0.0, 1.0))
    x = torch.rand(10, 16) * 0.5 + 0.25
    rep = gradient_masking_checks(clf, x, norm="L2", eps=0.2, steps=5)
    assert rep["black_box_vs_white_box"].skipped and not rep["black_box_vs_white_box"].flagged
    with pytest.raises(ConfigError):
        gradient_masking_checks(clf, x, eps=0.0)
    with pytest.raises(ConfigError):
        gradient_masking_checks(clf, x, eps=0.1, eps_factors=(0.0, 1.0))
    with pytest.raises(ConfigError):  # labels that the model never predicts: nothing to check
        gradient_masking_checks(clf, x, 1 - clf.predict(x), eps=0.1, steps=2)
