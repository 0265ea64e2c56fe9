"""MarginTracker: subspace margins recorded by the training loop (Sec. III-B1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from robustlens import Classifier
from robustlens.errors import ConfigError
from robustlens.geometry.subspaces import diagonal_dct_subspaces, subspace_margins
from robustlens.train import fit
from robustlens.train.tracker import MarginTracker, MarginTrackResult, plot_margin_evolution


def _data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = (0.5 + 0.1 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1)
    x[:, 0, :4, :4] += 0.3 * (y[:, None, None] - 1)  # a low-frequency, class-dependent feature
    return x.clamp(0, 1), y


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))


def _run(seed: int = 0) -> tuple[nn.Module, MarginTracker, object]:
    x, y = _data()
    subs = diagonal_dct_subspaces((1, 8, 8), block=4, stride=4)
    tracker = MarginTracker(x[:12], y[:12], subs, every=2, max_iter=30)
    model = _model()
    hist = fit(model, (x, y), epochs=3, lr=0.05, batch_size=32, seed=seed, callbacks=[tracker], progress=False)
    return model, tracker, hist


def test_tracker_records_every_n_epochs_and_matches_a_direct_measurement(tmp_path) -> None:
    model, tracker, hist = _run()
    assert tracker.epochs == [0, 2]  # epoch 0, every 2, and always the last epoch
    recs = hist.records  # type: ignore[attr-defined]
    assert "subspace_margin_median" not in recs[1].metrics
    assert recs[2].metrics["subspace_margin_median"] == tracker.medians[-1]
    # the last record is the margin of the final model measured directly
    x, y = _data()
    clf = Classifier(model, bounds=(0.0, 1.0))
    direct = subspace_margins(clf, (x[:12], y[:12]), tracker.subspaces, max_iter=30, progress=False)
    assert np.allclose(tracker.medians[-1], direct.median.tolist(), rtol=1e-5)
    res = tracker.result()
    assert res.median.shape == (2, 2) and res.names == ["dct[0:4]", "dct[4:8]"]
    assert bool((res.q_low <= res.median).all()) and bool((res.median <= res.q_high).all())
    back = MarginTrackResult.load(res.save(tmp_path / "track.json"))
    assert torch.equal(back.median, res.median) and back.epochs == [0, 2]
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_margin_evolution(res)
    assert np.allclose(ax.get_lines()[-1].get_ydata(), res.median[-1].numpy())


def test_tracker_is_deterministic_and_restores_its_state() -> None:
    _, a, _ = _run(seed=1)
    _, b, _ = _run(seed=1)
    assert a.medians == b.medians and a.accuracies == b.accuracies
    c = MarginTracker(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), a.subspaces)
    c.load_state_dict(a.state_dict())
    assert torch.equal(c.result().median, a.result().median)


def test_tracker_settings_are_checked() -> None:
    subs = diagonal_dct_subspaces((1, 8, 8), block=4)
    with pytest.raises(ConfigError, match="every"):
        MarginTracker(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), subs, every=0)
    with pytest.raises(ConfigError, match="labels"):
        MarginTracker(torch.zeros(2, 1, 8, 8), torch.zeros(3, dtype=torch.long), subs)
