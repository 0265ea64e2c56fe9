"""Accuracy under the common corruptions and the benchmark's summary numbers (Hendrycks & Dietterich, ICLR 2019),
the measure of Sec. IV-C1 of the paper (does adversarial robustness carry over to distribution shift?).

For a classifier ``f``, corruption ``c`` and severity ``s`` let ``E_{s,c}^f`` be the top-1 error. The benchmark
normalises by a baseline model (AlexNet in the paper; here any model the user gives, e.g. a standard-trained one):

- corruption error ``CE_c^f = sum_s E_{s,c}^f / sum_s E_{s,c}^base``, and ``mCE`` its mean over the corruptions;
- relative corruption error ``rCE_c^f = sum_s (E_{s,c}^f - E_clean^f) / sum_s (E_{s,c}^base - E_clean^base)``,
  and ``relative mCE`` its mean: the degradation relative to clean accuracy.

Both are in units of the baseline (1.0 = as bad as the baseline, below 1 = better).

>>> r = corruption_robustness(clf, x, y, corruptions=["fog", "contrast"], severities=[1, 3, 5], seed=0)
>>> r.accuracy.shape                       # (corruptions, severities)
>>> r.with_baseline(base_result).mce       # mCE relative to another model's result on the same images
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..analyses import register_analysis
from ..classifier import Classifier
from ..errors import ConfigError, InputError, RobustLensWarning
from ..results import Result
from ..runner import run_evaluation
from .corruptions import CORRUPTIONS, SEVERITIES, benchmark_corruptions, corrupt, family


@dataclass
class CorruptionResult(Result):
    """Accuracy of one classifier under each corruption and severity.

    Attributes:
        corruptions: the corruption names (registry keys), one row each.
        severities: the severities, one column each.
        accuracy: ``(corruptions, severities)`` top-1 accuracy on the corrupted images.
        clean_accuracy: accuracy on the same images uncorrupted.
        correct: ``(N, corruptions, severities)`` per-sample correctness (for paired comparisons).
        n: number of images; params: the severity table used (``"cifar"`` or ``"imagenet"``); seed: the seed.
        baseline: the name of the baseline model when CE/mCE were computed (:meth:`with_baseline`), else ``""``.
        ce, relative_ce: ``(corruptions,)`` corruption error and relative corruption error against the baseline
            (empty without one); mce, relative_mce: their means (NaN without a baseline).
    """

    corruptions: list[str]
    severities: list[int]
    accuracy: Tensor
    clean_accuracy: float
    correct: Tensor
    n: int
    params: str
    seed: int = 0
    baseline: str = ""
    ce: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.float64))
    relative_ce: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.float64))
    mce: float | None = None
    relative_mce: float | None = None

    @property
    def error(self) -> Tensor:
        """``(corruptions, severities)`` top-1 error ``E_{s,c}``."""
        return 1 - self.accuracy

    @property
    def mean_accuracy(self) -> float:
        """Accuracy averaged over every corruption and severity (the unnormalised summary)."""
        return float(self.accuracy.double().mean()) if self.accuracy.numel() else math.nan

    def accuracy_of(self, name: str) -> Tensor:
        """``(severities,)`` accuracy under corruption ``name``."""
        return self.accuracy[self.corruptions.index(CORRUPTIONS.key(name))]

    def family_accuracy(self) -> dict[str, float]:
        """Mean accuracy over the corruptions and severities of each family (noise, blur, weather, digital)."""
        out: dict[str, list[float]] = {}
        for i, c in enumerate(self.corruptions):
            out.setdefault(family(c), []).extend(self.accuracy[i].double().tolist())
        return {k: sum(v) / len(v) for k, v in out.items()}

    def with_baseline(self, base: CorruptionResult, name: str = "baseline") -> CorruptionResult:
        """This result with CE, relative CE, mCE and relative mCE against ``base`` (the same corruptions and
        severities; the benchmark's AlexNet replaced by ``base``). A corruption on which the baseline makes no
        error (or no degradation, for the relative CE) has no finite CE: an :class:`InputError` says which."""
        if base.corruptions != self.corruptions or base.severities != self.severities:
            raise ConfigError("the baseline result must cover the same corruptions and severities: "
                              f"{base.corruptions} x {base.severities} vs {self.corruptions} x {self.severities}")
        e, eb = self.error.double().sum(1), base.error.double().sum(1)
        de = (self.error.double() - (1 - self.clean_accuracy)).sum(1)
        deb = (base.error.double() - (1 - base.clean_accuracy)).sum(1)
        if bool((eb <= 0).any()):
            bad = [c for c, v in zip(self.corruptions, eb.tolist(), strict=True) if v <= 0]
            raise InputError(f"the baseline makes no error under {bad}: its corruption error is 0 and CE is "
                             "undefined; use a weaker baseline or more images")
        ce = e / eb
        rce = torch.where(deb > 0, de / deb.clamp_min(1e-12), torch.full_like(de, math.nan))
        rmce = float(rce.mean()) if bool(torch.isfinite(rce).all()) else math.nan
        return replace(self, baseline=name, ce=ce, relative_ce=rce, mce=float(ce.mean()),
                       relative_mce=None if math.isnan(rmce) else rmce)


def _as_unit(clf: Classifier, x: Tensor) -> tuple[Tensor, float, float]:
    lo, hi = clf.bounds
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise ConfigError(f"common corruptions need finite classifier bounds (the image range), got {clf.bounds}; "
                          "give Classifier(..., bounds=(0, 1))")
    return (x - lo) / (hi - lo), float(lo), float(hi)


def resolve_corruptions(corruptions: Sequence[str] | str | None) -> list[str]:
    if corruptions is None or corruptions == "benchmark":
        return benchmark_corruptions()
    if corruptions == "all":
        return benchmark_corruptions(extra=True)
    if isinstance(corruptions, str):
        corruptions = [corruptions]
    names = [CORRUPTIONS.key(c) for c in corruptions]
    if not names:
        raise ConfigError("corruptions must name at least one corruption (or 'benchmark' / 'all')")
    return list(dict.fromkeys(names))


def resolve_severities(severities: Sequence[int]) -> list[int]:
    out = []
    for s in severities:
        if isinstance(s, bool) or int(s) != s or not 1 <= int(s) <= 5:
            raise ConfigError(f"severities must be integers from 1 to 5, got {s!r}")
        out.append(int(s))
    if not out:
        raise ConfigError("severities must list at least one severity from 1 to 5")
    return list(dict.fromkeys(out))


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> CorruptionResult:
    return corruption_robustness(clf, x, y, corruptions=["gaussian-noise", "fog", "contrast"], severities=[1, 5],
                                 seed=seed, progress=False)


@register_analysis("corruption-robustness", kind="shift", needs_gradients=False, smoke=_smoke)
def corruption_robustness(
    clf: Classifier,
    x: Tensor,
    y: Tensor | None = None,
    *,
    corruptions: Sequence[str] | str | None = None,
    severities: Sequence[int] = SEVERITIES,
    params: str = "auto",
    baseline: CorruptionResult | None = None,
    seed: int = 0,
    indices: Tensor | Sequence[int] | None = None,
    batch_size: int | None = None,
    state_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> CorruptionResult:
    """Accuracy of ``clf`` on ``x`` under each corruption and severity (Hendrycks & Dietterich 2019; paper
    Sec. IV-C1), with CE and mCE against ``baseline`` when given.

    The images go through :func:`robustlens.runner.run_evaluation` (``state_dir`` / ``resume`` checkpoint every
    batch); each image's corruptions are seeded by ``(seed, its index, corruption)``, so the numbers do not depend
    on the batch size. Images are mapped from the classifier's bounds to ``[0, 1]`` and back.

    Args:
        x, y: images ``(N, C, H, W)`` (C = 1 or 3) in the classifier's bounds and their labels (default: the
            classifier's own predictions on the clean images, so that accuracy reads as agreement).
        corruptions: names, ``"benchmark"`` (the 15, default) or ``"all"`` (with the 4 extra).
        severities: a subset of 1..5.
        params: the severity table: ``"cifar"``, ``"imagenet"`` or ``"auto"`` (by image size).
        baseline: a result of the baseline model on the same images and settings (for CE and mCE).

    >>> r = corruption_robustness(clf, x, y, corruptions=["fog"], severities=[1, 5])
    >>> r.accuracy_of("fog")
    """
    names, sev = resolve_corruptions(corruptions), resolve_severities(severities)
    x, yv = clf.validate(x, None if y is None else torch.as_tensor(y))
    if x.dim() != 4:
        raise InputError(f"common corruptions need image inputs (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise InputError(f"common corruptions need grey or RGB images (C = 1 or 3), got C = {x.shape[1]}")
    with clf.random_state(seed):
        labels = clf.predict(x, validate=False) if yv is None else yv
    _as_unit(clf, x)
    bs = batch_size or clf.batch_size

    def fn(bx: Tensor, by: Tensor | None, bidx: Tensor) -> dict[str, Tensor]:
        assert by is not None  # labels are always given to the runner here
        u, lo, hi = _as_unit(clf, bx)
        with clf.random_state(seed):
            clean = clf.predict(bx, batch_size=bs, validate=False) == by
        rows = []
        for c in names:
            for s in sev:
                xc = corrupt(u, c, s, seed=seed, indices=bidx.tolist(), params=params) * (hi - lo) + lo
                with clf.random_state(seed):
                    z = clf.decision_logits(xc, batch_size=bs)
                finite = torch.isfinite(z).all(1)
                if not bool(finite.all()):
                    nonfinite[c] = nonfinite.get(c, 0) + int((~finite).sum())
                rows.append(finite & (z.argmax(1) == by))
        return {"clean": clean.cpu(), "correct": torch.stack(rows, 1).view(-1, len(names), len(sev)).cpu()}

    nonfinite: dict[str, int] = {}

    config: dict[str, Any] = {"analysis": "corruption-robustness", "corruptions": names, "severities": sev,
                              "params": params}
    ev = run_evaluation(fn, (x, labels), state_dir=state_dir, batch_size=bs, config=config, seed=seed, model=clf,
                        indices=indices, resume=resume, progress=progress, desc="corruptions")
    correct = ev["correct"].bool()
    if nonfinite:
        warnings.warn(f"the model gave NaN or Inf logits on corrupted images ({nonfinite} images by corruption); "
                      "they count as misclassified (no decision can be read from them)", RobustLensWarning,
                      stacklevel=2)
    ref = params if params != "auto" else ("cifar" if max(x.shape[2], x.shape[3]) <= 64 else "imagenet")
    out = CorruptionResult(
        corruptions=names, severities=sev, accuracy=correct.double().mean(0), clean_accuracy=float(
            ev["clean"].double().mean()), correct=correct, n=int(x.shape[0]), params=ref, seed=int(seed))
    return out.with_baseline(baseline) if baseline is not None else out


def plot_corruptions(result: CorruptionResult, ax: Any = None, *, label: str | None = None,
                     color: str | None = None) -> Any:
    """Accuracy against severity, one line per corruption family (mean over its corruptions), clean accuracy at
    severity 0; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 3.4))
    styles = {"noise": "-", "blur": "--", "weather": ":", "digital": "-."}
    fams: dict[str, list[int]] = {}
    for i, c in enumerate(result.corruptions):
        fams.setdefault(family(c), []).append(i)
    xs = [0, *result.severities]
    for fam, rows in fams.items():
        acc = result.accuracy[rows].double().mean(0).tolist()
        name = f"{label}: {fam}" if label else fam
        ax.plot(xs, [result.clean_accuracy, *acc], styles.get(fam, "-"), marker="o", ms=3, color=color, label=name)
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    return ax


def plot_corruption_heatmap(result: CorruptionResult, ax: Any = None) -> Any:
    """Heat map of accuracy, corruptions by severity; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 0.28 * len(result.corruptions) + 1))
    im = ax.imshow(result.accuracy.double().numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(result.corruptions)), result.corruptions, fontsize=7)
    ax.set_xticks(range(len(result.severities)), [str(s) for s in result.severities])
    ax.set_xlabel("severity")
    ax.figure.colorbar(im, ax=ax, label="accuracy")
    return ax


__all__ = ["CorruptionResult", "corruption_robustness", "plot_corruption_heatmap", "plot_corruptions",
           "resolve_corruptions", "resolve_severities"]
