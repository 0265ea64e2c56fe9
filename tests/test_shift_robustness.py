"""corruption_robustness against a dense computation (corrupt, then predict), the benchmark's CE / mCE / relative
mCE formulas on hand-made results, batch-size independence, the data-range mapping and bad settings."""

from __future__ import annotations

import math

import pytest
import torch
from models import Affine

from robustlens import Classifier, ConfigError, InputError
from robustlens.shift import CorruptionResult, corrupt, corruption_robustness, plot_corruption_heatmap, plot_corruptions

NAMES = ["gaussian-noise", "fog", "contrast", "jpeg"]


def setup(bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[Classifier, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x01 = torch.rand(10, 1, 8, 8, generator=g)
    model = Affine(64, 3, seed=1, input_shape=(1, 8, 8))
    lo, hi = bounds
    if bounds != (0.0, 1.0):
        model = torch.nn.Sequential(Rescale(lo, hi), model)
    clf = Classifier(model.eval(), input_shape=(1, 8, 8), bounds=bounds, batch_size=4)
    x = x01 * (hi - lo) + lo
    return clf, x, torch.randint(0, 3, (10,), generator=g)


class Rescale(torch.nn.Module):
    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.lo) / (self.hi - self.lo)


def test_accuracy_equals_dense_computation() -> None:
    clf, x, y = setup()
    r = corruption_robustness(clf, x, y, corruptions=NAMES, severities=[1, 3, 5], seed=3, progress=False)
    assert r.accuracy.shape == (4, 3) and r.correct.shape == (10, 4, 3)
    for i, c in enumerate(NAMES):
        for j, s in enumerate([1, 3, 5]):
            dense = (clf.predict(corrupt(x, c, s, seed=3)) == y).double().mean()
            assert float(r.accuracy[i, j]) == pytest.approx(float(dense), abs=1e-12)
    assert r.clean_accuracy == pytest.approx(clf.accuracy(x, y))
    assert r.mce is None and r.ce.numel() == 0


def test_batch_size_and_bounds_do_not_change_the_numbers() -> None:
    clf, x, y = setup()
    a = corruption_robustness(clf, x, y, corruptions=NAMES, severities=[2, 4], seed=1, batch_size=3, progress=False)
    b = corruption_robustness(clf, x, y, corruptions=NAMES, severities=[2, 4], seed=1, batch_size=10, progress=False)
    assert torch.equal(a.correct, b.correct)
    clf2, x2, _ = setup((-1.0, 1.0))  # the same model on images in [-1, 1]
    c = corruption_robustness(clf2, x2, y, corruptions=NAMES, severities=[2, 4], seed=1, progress=False)
    assert (a.correct != c.correct).sum() <= 1  # float rounding of the rescaling may move one decision


def _result(acc: list[list[float]], clean: float) -> CorruptionResult:
    t = torch.tensor(acc, dtype=torch.float64)
    return CorruptionResult(corruptions=["fog", "contrast"], severities=[1, 2], accuracy=t, clean_accuracy=clean,
                            correct=torch.zeros(1, 2, 2, dtype=torch.bool), n=1, params="cifar")


def test_ce_mce_relative_mce_formulas() -> None:
    model = _result([[0.8, 0.6], [0.5, 0.3]], clean=0.9)
    base = _result([[0.6, 0.4], [0.5, 0.1]], clean=0.8)
    r = model.with_baseline(base, "std")
    # CE_c = sum_s E / sum_s E_base: fog (0.2 + 0.4) / (0.4 + 0.6), contrast (0.5 + 0.7) / (0.5 + 0.9)
    torch.testing.assert_close(r.ce, torch.tensor([0.6, 1.2 / 1.4], dtype=torch.float64))
    assert r.mce == pytest.approx((0.6 + 1.2 / 1.4) / 2)
    # rCE_c = sum_s (E - E_clean) / sum_s (E_base - E_clean_base)
    rce = [(0.1 + 0.3) / (0.2 + 0.4), (0.4 + 0.6) / (0.3 + 0.7)]
    torch.testing.assert_close(r.relative_ce, torch.tensor(rce, dtype=torch.float64))
    assert r.relative_mce == pytest.approx(sum(rce) / 2) and r.baseline == "std"
    assert base.with_baseline(base).mce == pytest.approx(1.0)
    assert r.family_accuracy() == {"weather": pytest.approx(0.7), "digital": pytest.approx(0.4)}


def test_baseline_errors() -> None:
    model = _result([[0.8, 0.6], [0.5, 0.3]], clean=0.9)
    with pytest.raises(InputError, match="no error"):
        model.with_baseline(_result([[1.0, 1.0], [0.5, 0.3]], clean=1.0))
    other = CorruptionResult(corruptions=["fog"], severities=[1, 2], accuracy=torch.ones(1, 2), clean_accuracy=1.0,
                             correct=torch.ones(1, 1, 2, dtype=torch.bool), n=1, params="cifar")
    with pytest.raises(ConfigError, match="same corruptions"):
        model.with_baseline(other)


def test_baseline_through_the_call_and_round_trip(tmp_path: object) -> None:
    clf, x, y = setup()
    base = corruption_robustness(Classifier(Affine(64, 3, seed=5, input_shape=(1, 8, 8)).eval(),
                                            input_shape=(1, 8, 8)), x, y, corruptions=NAMES, severities=[5],
                                 progress=False)
    r = corruption_robustness(clf, x, y, corruptions=NAMES, severities=[5], baseline=base, progress=False)
    assert r.mce is not None and math.isfinite(r.mce)
    from pathlib import Path

    p = r.save(Path(str(tmp_path)) / "c.json")
    back = CorruptionResult.load(p)
    assert torch.equal(back.accuracy, r.accuracy) and back.mce == r.mce


def test_settings_are_checked() -> None:
    clf, x, y = setup()
    with pytest.raises(ConfigError, match="severities"):
        corruption_robustness(clf, x, y, corruptions=["fog"], severities=[0], progress=False)
    with pytest.raises(ConfigError, match="choose one of"):
        corruption_robustness(clf, x, y, corruptions=["rain"], progress=False)
    flat = Classifier(Affine(64, 3).eval(), input_shape=(64,))
    with pytest.raises(InputError, match="image inputs"):
        corruption_robustness(flat, x.flatten(1), y, corruptions=["fog"], progress=False)


def test_plots() -> None:
    import matplotlib

    matplotlib.use("Agg")
    r = _result([[0.8, 0.6], [0.5, 0.3]], clean=0.9)
    assert plot_corruptions(r, label="m").get_ylabel() == "accuracy"
    assert plot_corruption_heatmap(r).get_xlabel() == "severity"
