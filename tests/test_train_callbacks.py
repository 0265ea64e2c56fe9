"""Training diagnostics (paper Sec. III-B2) checked on models whose robustness is known in closed form.

- RobustOverfittingTracker: a scripted sequence of affine models (robust accuracy ``margin > eps ||w||_1``, exact
  for Linf PGD on an affine model) run through the real loop; the tracker must record those values and keep the
  weights of the best robust epoch.
- CatastrophicOverfittingDetector: a gradient-masked model whose input gradient vanishes in a flat region around
  the data (FGSM from the clean point does nothing) while the loss climbs outside it (PGD from a random start finds
  the cliff): a real collapse of PGD accuracy with FGSM accuracy high, which must be flagged, and stop or switch.
- gradient_alignment: equal to the cosine computed directly with autograd; exactly 1 on a two-class affine model.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlens.errors import ConfigError, RobustLensWarning
from robustlens.seeding import generator
from robustlens.train import (
    CatastrophicOverfittingDetector,
    RobustOverfittingTracker,
    Standard,
    Trainer,
    fit,
    gradient_alignment,
    load_checkpoint,
)

D = 8


class Frozen:
    """An objective with zero gradient: the loop runs, the weights stay what the scripted callback sets."""

    name = "frozen"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, step_ctx) -> tuple:  # noqa: ANN001
        return sum(p.sum() for p in model.parameters()) * 0.0, {}


class Script:
    """Sets the model's weights to ``states[epoch]`` at the end of each epoch (placed before the diagnostic)."""

    def __init__(self, states: list[dict[str, torch.Tensor]]) -> None:
        self.states = states

    def on_epoch_end(self, trainer: Trainer, epoch: int, history) -> None:  # noqa: ANN001
        trainer.model.load_state_dict(self.states[epoch])


def affine_state(scale: float, shift: float) -> dict[str, torch.Tensor]:
    """Two-class affine model, logit difference ``scale * (sum(x) - D/2) + shift``."""
    w = torch.zeros(2, D, dtype=torch.float64)
    w[1] = scale
    b = torch.tensor([0.0, shift - scale * D / 2], dtype=torch.float64)
    return {"weight": w, "bias": b}


def affine_data(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 0.35 + 0.3 * torch.rand(n, D, generator=g, dtype=torch.float64)  # a small eps never meets the box
    z = x.sum(1) - D / 2
    return x, (z > 0).long()


def closed_form_robust(state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Linf robust accuracy of a two-class affine model: signed margin > eps * ||w_1 - w_0||_1."""
    dw = state["weight"][1] - state["weight"][0]
    db = state["bias"][1] - state["bias"][0]
    f = x @ dw + db
    margin = torch.where(y == 1, f, -f)
    return float((margin > eps * dw.abs().sum()).double().mean())


def test_robust_overfitting_tracker_keeps_best_robust_weights(tmp_path) -> None:
    x, y = affine_data()
    eps = 0.01
    # the boundary shifted off the labelling, then on it, then off again: robust accuracy rises, then falls
    states = [affine_state(1.0, 0.3), affine_state(1.0, 0.0), affine_state(1.0, -0.4)]
    expected = [closed_form_robust(s, x, y, eps) for s in states]
    assert expected[1] > expected[0] and expected[1] > expected[2]  # the script is a real rise and fall
    tracker = RobustOverfittingTracker(x, y, eps=eps, steps=20, alpha=0.01, restore_best=True)
    model = nn.Linear(D, 2).double()
    hist = fit(model, (x, y), objective=Frozen(), epochs=3, lr=0.1, weight_decay=0.0, batch_size=50,
               callbacks=[Script(states), tracker], out_dir=tmp_path, progress=False)
    got = hist.series("metrics.robust_accuracy")
    assert got == pytest.approx(expected, abs=1e-12)
    assert tracker.best_epoch == 1 and tracker.best_accuracy == pytest.approx(expected[1])
    assert hist.series("metrics.best_robust_epoch") == [0, 1, 1]
    saved = torch.load(tmp_path / "best_robust.pt", weights_only=True)
    for k, v in states[1].items():
        assert torch.equal(saved[k], v)
        assert torch.equal(model.state_dict()[k], v)  # restore_best put them back at the end
    # the tracker's state travels in the checkpoint and is restored on resume
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    other = RobustOverfittingTracker(x, y, eps=eps)
    other.load_state_dict(ckpt["callbacks"]["1:RobustOverfittingTracker"])
    assert other.best_epoch == 1 and other.best_accuracy == pytest.approx(expected[1])
    assert other.best_state is not None and torch.equal(other.best_state["weight"], states[1]["weight"])


class Masked(nn.Module):
    """Logit difference ``1 - k * sum_j relu(|x_j - 0.5| - r)``: flat (zero input gradient) inside the Linf ball of
    radius ``r`` around the centre, falling steeply outside. With data near the centre, ``k = 0`` is robust to
    everything; ``k = 10`` is broken by PGD with a random start at ``eps = 0.3`` but not by FGSM from the clean point,
    whose gradient is zero (gradient masking, the signature of catastrophic overfitting)."""

    def __init__(self, k: float, r: float = 0.1) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(float(k), dtype=torch.float64))
        self.r = r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 1 - self.k * F.relu((x.flatten(1) - 0.5).abs() - self.r).sum(1)
        return torch.stack([torch.zeros_like(m), m], 1)


def masked_data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return 0.5 + 0.1 * (torch.rand(n, D, generator=g, dtype=torch.float64) - 0.5), torch.ones(n, dtype=torch.long)


def run_detector(action: str, ks: list[float], **kw) -> tuple:  # noqa: ANN003
    x, y = masked_data()
    det = CatastrophicOverfittingDetector(x, y, eps=0.3, pgd_steps=10, n=None, action=action, **kw)  # type: ignore
    model = Masked(0.0)
    states = [{"k": torch.tensor(k, dtype=torch.float64)} for k in ks]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(model, objective=Frozen(), epochs=len(ks), lr=0.1, weight_decay=0.0, batch_size=32,
                          callbacks=[Script(states), det], progress=False)
        hist = trainer.fit((x, y))
    flagged = [w for w in caught if issubclass(w.category, RobustLensWarning) and "catastrophic" in str(w.message)]
    return det, trainer, hist, flagged


def test_detector_measures_a_real_collapse_and_warns() -> None:
    det, trainer, hist, flagged = run_detector("warn", [0.0, 0.0, 10.0, 10.0])
    pgd, fgsm = hist.series("metrics.pgd_accuracy"), hist.series("metrics.fgsm_accuracy")
    assert pgd == [1.0, 1.0, 0.0, 0.0]  # PGD from a random start finds the cliff outside the flat region
    assert fgsm == [1.0, 1.0, 1.0, 1.0]  # FGSM from the clean point sees a zero gradient
    assert [r.metrics["catastrophic_overfitting"] for r in hist.records] == [False, False, True, True]
    assert det.detected_epoch == 2 and len(flagged) == 2
    assert len(hist.records) == 4 and not hist.stopped_early  # "warn" carries on
    assert float(trainer.model.k.detach()) == 10.0


def test_detector_stops_and_restores_the_last_good_weights() -> None:
    det, trainer, hist, flagged = run_detector("stop", [0.0, 0.0, 10.0, 10.0, 10.0])
    assert len(hist.records) == 3 and hist.stopped_early
    assert "catastrophic overfitting at epoch 2" in (hist.stop_reason or "")
    assert hist.records[-1].metrics["restored_epoch"] == 0
    assert float(trainer.model.k.detach()) == 0.0  # the weights of the best PGD epoch are back


def test_detector_switches_objective() -> None:
    alt = Standard()
    det, trainer, hist, flagged = run_detector("switch", [0.0, 10.0, 0.0], switch_to=alt, restore_best=False)
    assert [r.objective for r in hist.records] == ["frozen", "frozen", "standard"]
    assert hist.records[1].metrics["switched_to"] == "standard"
    assert trainer.objective is alt and len(hist.records) == 3


def test_detector_rule_needs_both_drop_and_gap() -> None:
    x, y = masked_data(4)
    det = CatastrophicOverfittingDetector(x, y, eps=0.3, drop=0.2, gap=0.2, collapse=0.1)
    # a collapse inside the first epoch: no earlier PGD accuracy to fall from (FGSM-AT at eps 0.3 on MNIST)
    assert det.best_pgd < 0 and det.is_catastrophic(0.0, 0.77)
    assert not det.is_catastrophic(0.0, 0.1)  # both low: an untrained model, not masking
    assert not det.is_catastrophic(0.45, 0.89)  # healthy early FGSM-RS training: PGD at half the FGSM accuracy
    assert not det.is_catastrophic(0.12, 0.49)  # early GradAlign training: both still rising
    det.best_pgd = 0.8
    assert det.is_catastrophic(0.5, 0.9)
    assert not det.is_catastrophic(0.5, 0.6)  # FGSM fell too: plain loss of robustness, not masking
    assert not det.is_catastrophic(0.7, 0.95)  # PGD barely moved
    off = CatastrophicOverfittingDetector(x, y, eps=0.3, collapse=0.0)
    assert not off.is_catastrophic(0.0, 0.77)  # collapse=0: only a fall from an earlier best counts
    with pytest.raises(ConfigError, match="collapse"):
        CatastrophicOverfittingDetector(x, y, eps=0.3, collapse=1.5)
    with pytest.raises(ConfigError, match="switch_to"):
        CatastrophicOverfittingDetector(x, y, eps=0.3, action="switch")
    with pytest.raises(ConfigError, match="action"):
        CatastrophicOverfittingDetector(x, y, eps=0.3, action="explode")  # type: ignore[arg-type]


def test_detector_flags_a_collapse_of_clean_accuracy() -> None:
    """Label leaking's signature: held-out clean accuracy collapses while FGSM and PGD accuracy fall together, which
    the masking rule cannot see. Scripted affine models whose clean accuracy is known exactly: 1, 1, then 0 (the
    logit difference flips sign); at eps 0.3 none of them is robust, so FGSM and PGD accuracy stay 0."""
    x, y = affine_data(64)
    states = [affine_state(10.0, 0.0), affine_state(10.0, 0.0), affine_state(-10.0, 0.0)]
    assert [closed_form_robust(st, x, y, 0.0) for st in states] == [1.0, 1.0, 0.0]

    def run(**kw) -> tuple:  # noqa: ANN003
        det = CatastrophicOverfittingDetector(x, y, eps=0.3, pgd_steps=5, n=None, **kw)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = Trainer(nn.Linear(D, 2).double(), objective=Frozen(), epochs=3, lr=0.1, weight_decay=0.0,
                              batch_size=32, callbacks=[Script(states), det], progress=False)
            hist = trainer.fit((x, y))
        return det, hist, [str(w.message) for w in caught if issubclass(w.category, RobustLensWarning)]

    det, hist, msgs = run()
    assert hist.series("metrics.clean_accuracy") == [1.0, 1.0, 0.0]
    assert hist.series("metrics.fgsm_accuracy") == hist.series("metrics.pgd_accuracy") == [0.0, 0.0, 0.0]
    assert [r.metrics["clean_collapse"] for r in hist.records] == [False, False, True]
    assert [r.metrics["catastrophic_overfitting"] for r in hist.records] == [False, False, True]
    assert det.detected_epoch == 2 and len(msgs) == 1 and "clean accuracy fell to 0.000" in msgs[0]
    assert det.state_dict()["best_clean"] == 1.0
    resumed = CatastrophicOverfittingDetector(x, y, eps=0.3, n=None)
    resumed.load_state_dict(det.state_dict())
    assert resumed.best_clean == 1.0 and resumed.is_clean_collapse(0.6)
    legacy = {k: v for k, v in det.state_dict().items() if k != "best_clean"}  # a checkpoint from before the rule
    resumed.load_state_dict(legacy)
    assert resumed.best_clean == -1.0 and not resumed.is_clean_collapse(0.0)
    _, hist_off, msgs_off = run(clean_drop=None)
    assert not any(r.metrics["catastrophic_overfitting"] for r in hist_off.records) and not msgs_off
    with pytest.raises(ConfigError, match="clean_drop"):
        CatastrophicOverfittingDetector(x, y, eps=0.3, clean_drop=0.0)


def tanh_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D, 16), nn.Tanh(), nn.Linear(16, 3)).double()


def test_gradient_alignment_matches_direct_cosine() -> None:
    model = tanh_mlp()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(10, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (10,), generator=g)
    eps, seed = 0.2, 7
    got = gradient_alignment(Trainer(model, progress=False), x, y, eps=eps, seed=seed)
    u = torch.rand(x.shape, generator=generator(seed, "gradient-alignment")).double()
    x2 = (x + (2 * u - 1) * eps).clamp(0, 1)

    def grad(z: torch.Tensor) -> torch.Tensor:
        z = z.clone().requires_grad_(True)
        (gz,) = torch.autograd.grad(F.cross_entropy(model(z), y, reduction="sum"), z)
        return gz

    g1, g2 = grad(x), grad(x2)
    direct = ((g1 * g2).sum(1) / (g1.norm(dim=1) * g2.norm(dim=1))).mean()
    assert got == pytest.approx(float(direct), abs=1e-10)
    assert got < 0.9999  # a curved model: the check is not trivially 1


def test_gradient_alignment_is_one_on_a_two_class_affine_model() -> None:
    model = nn.Linear(D, 2).double()
    with torch.no_grad():
        model.load_state_dict(affine_state(1.0, 0.2))
    x, y = affine_data(20)
    # grad_x CE = (p_1 - y_1)(w_1 - w_0): the same direction and sign at every point, so the cosine is exactly 1
    assert gradient_alignment(Trainer(model, progress=False), x, y, eps=0.3, seed=0) == pytest.approx(1.0,
                                                                                                      abs=1e-12)
