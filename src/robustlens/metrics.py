"""Robustness metrics over a data set: robust accuracy (eq. 12) and distance to the boundary (eq. 13) of
Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and Improving
Deep Learning through Adversarial Robustness", Proc. IEEE 2021.

- :func:`evaluate_minimal` runs a minimal-norm attack (eq. 8-9) once over a data set and returns the per-sample
  perturbation norms with their statistics (:class:`DistanceStats`, eq. 13: mean, median, quantiles, per class,
  the relative norm ``||r||_p / ||x||_p`` that DeepFool calls rho_adv) and the robust-accuracy-vs-eps curve
  (:class:`RobustAccuracyCurve`, eq. 12 at every eps from the one run).
- :func:`robust_accuracy` gives eq. (12) on an eps grid, either from one minimal-norm run or from one eps-bounded
  attack per eps (a factory ``eps -> attack``).
- :func:`distance_stats` and :func:`robust_accuracy_curve` compute the same from per-sample tensors (for instance
  an :class:`~robustlens.attacks.base.AttackResult`).

Data-set runs go through :func:`robustlens.runner.run_evaluation`, so they checkpoint every batch to ``state_dir``
and resume with ``resume=True``; random draws use dataset indices, so results do not depend on the batch size.
Success is the attacks' own (:func:`robustlens.decision.decide`); a sample whose attack stopped on a NaN or Inf
gradient has an unknown robustness, and a robust accuracy that would count it is refused with an ``InputError``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .analyses import register_analysis
from .attacks.base import Attack, AttackResult, BoundedAttack, MinimalNormAttack, check_undecided
from .classifier import Classifier
from .errors import ConfigError, InputError
from .norms import INF, lp_norm, norm_name
from .results import Result
from .runner import run_evaluation

DEFAULT_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
AttackFactory = Callable[[float], Any]
"""``eps -> attack``: an eps-bounded :class:`Attack` per eps (e.g. ``lambda e: make_attack("autoattack", eps=e)``), or
any callable with the attack call and an ``eps`` attribute."""


# ---------------------------------------------------------------------------------------------- results
@dataclass
class RobustAccuracyCurve(Result):
    """Robust accuracy (eq. 12) as a function of eps.

    Attributes:
        eps: the budgets, increasing.
        robust_accuracy: the fraction of samples correctly classified and not fooled within each eps.
        clean_accuracy: the fraction correctly classified (robust accuracy at eps = 0).
        p: the norm order.
        attack: the attack's name.
        n: number of samples.
        source: ``"minimal"`` (every eps from one minimal-norm run) or ``"bounded"`` (one attack per eps).
    """

    eps: list[float]
    robust_accuracy: list[float]
    clean_accuracy: float
    p: float
    attack: str
    n: int
    source: str = "minimal"

    def at(self, eps: float) -> float:
        """Robust accuracy at one of the recorded eps values."""
        for e, a in zip(self.eps, self.robust_accuracy, strict=True):
            if abs(e - eps) <= 1e-12 * max(1.0, abs(eps)):
                return a
        raise ConfigError(f"eps={eps} is not on this curve's grid {self.eps}; evaluate it explicitly")

    def plot(self, ax: Any = None, label: str | None = None) -> Any:
        """Draw the curve on a matplotlib axis (a new figure when ``ax`` is None); returns the axis."""
        import matplotlib

        if ax is None:
            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(4.5, 3.2))
        kwargs = {"where": "post"} if self.source == "minimal" else {}
        draw = ax.step if self.source == "minimal" else ax.plot
        draw(self.eps, self.robust_accuracy, label=label or f"{self.attack} ({norm_name(self.p)})", **kwargs)
        ax.set_xlabel(f"{norm_name(self.p)} budget eps")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
        return ax


@dataclass
class DistanceStats(Result):
    """Statistics of the minimal perturbation norms ``||r(x)||_p`` (paper eq. 13) over a data set.

    The statistics are over the samples that are correctly classified and for which the attack found an adversarial
    example; each found norm is an upper bound on the sample's true distance to the boundary. ``n_failed`` counts
    correctly classified samples the attack did not fool (their distance is unknown, at least the attack's reach).

    Attributes:
        p: the norm order.
        n: samples correctly classified (the population of eq. 13).
        n_found: of those, samples with an adversarial example.
        n_failed: ``n - n_found``.
        mean, median, std: of the found norms (eq. 13 is the mean).
        quantiles: ``{"0.1": value, ...}`` of the found norms.
        relative_mean, relative_median: of ``||r||_p / ||x||_p`` (DeepFool's rho_adv is ``relative_mean`` for L2).
        per_class: per true class, ``{"n", "n_found", "mean", "median"}``.
        attack: the attack's name.
    """

    p: float
    n: int
    n_found: int
    n_failed: int
    mean: float
    median: float
    std: float
    quantiles: dict[str, float]
    relative_mean: float
    relative_median: float
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    attack: str = ""

    @property
    def rho_adv(self) -> float:
        """DeepFool's rho_adv: the mean relative norm ``||r||_p / ||x||_p``."""
        return self.relative_mean


@dataclass
class MinimalNormEvaluation(Result):
    """A minimal-norm attack over a data set: per-sample outputs, eq. (13) statistics and the eq. (12) curve.

    Attributes:
        norm: per-sample perturbation norm in the attack's norm (``inf`` where the attack failed).
        success: per sample, whether an adversarial example was found.
        clean_correct: per sample, whether the clean input is correctly classified.
        labels: the labels attacked.
        clean_norm: ``||x||_p`` per sample (for relative norms).
        indices: the dataset index of each row.
        stats: :class:`DistanceStats`.
        curve: :class:`RobustAccuracyCurve`.
        queries: forward and backward passes used (summed over the samples computed in this run).
        settings: the attack's settings.
    """

    norm: Tensor
    success: Tensor
    clean_correct: Tensor
    labels: Tensor
    clean_norm: Tensor
    indices: Tensor
    stats: DistanceStats
    curve: RobustAccuracyCurve
    queries: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def robust_accuracy(self, eps: float | Sequence[float]) -> Tensor:
        """Robust accuracy (eq. 12) at any eps, from the one run."""
        return _robust_at(self.norm, self.success, self.clean_correct, _as_list(eps)).float()


# ---------------------------------------------------------------------------------------------- per-sample maths
def _as_list(eps: float | Sequence[float]) -> list[float]:
    vals = [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]
    if not vals:
        raise ConfigError("give at least one eps value")
    if any(not math.isfinite(e) or e < 0 for e in vals):
        raise ConfigError(f"eps values must be finite and >= 0, got {vals}")
    return vals


def _robust_at(norm: Tensor, success: Tensor, correct: Tensor, eps: list[float]) -> Tensor:
    """Eq. (12) from minimal norms: correct and not fooled within eps (``norm <= eps``), per eps."""
    e = torch.tensor(eps, dtype=torch.float64)
    n = torch.as_tensor(norm).double().cpu().flatten()
    fooled = torch.as_tensor(success).bool().cpu().flatten()[None, :] & (n[None, :] <= e[:, None] + 1e-12)
    return (torch.as_tensor(correct).bool().cpu().flatten()[None, :] & ~fooled).double().mean(1)


def robust_accuracy_curve(
    norm: Tensor,
    success: Tensor,
    clean_correct: Tensor,
    eps: Sequence[float] | None = None,
    *,
    p: float = 2.0,
    attack: str = "",
    num: int = 50,
) -> RobustAccuracyCurve:
    """Robust accuracy (eq. 12) at each eps from per-sample minimal perturbation norms.

    A sample counts as robust at eps when it is correctly classified and its minimal perturbation is larger than
    eps (or none was found). ``eps=None`` uses ``num`` points from 0 to 1.05 times the largest norm found.
    """
    norm = torch.as_tensor(norm).double().cpu().flatten()
    success = torch.as_tensor(success).bool().cpu().flatten()
    correct = torch.as_tensor(clean_correct).bool().cpu().flatten()
    if not (norm.numel() == success.numel() == correct.numel()):
        raise InputError("norm, success and clean_correct must have one entry per sample")
    if norm.numel() == 0:
        raise InputError("no samples: nothing to evaluate")
    if eps is None:
        found = norm[success & torch.isfinite(norm)]
        top = float(found.max()) * 1.05 if found.numel() else 1.0
        grid = torch.linspace(0, top if top > 0 else 1.0, num, dtype=torch.float64).tolist()
    else:
        grid = sorted(_as_list(eps))
    acc = _robust_at(norm, success, correct, grid)
    return RobustAccuracyCurve(eps=grid, robust_accuracy=acc.tolist(), clean_accuracy=float(correct.double().mean()),
                               p=float(p), attack=attack, n=int(norm.numel()), source="minimal")


def _stats(v: Tensor) -> tuple[float, float, float]:
    if v.numel() == 0:
        return math.nan, math.nan, math.nan
    return float(v.mean()), float(v.median()), float(v.std()) if v.numel() > 1 else 0.0


def distance_stats(
    norm: Tensor,
    labels: Tensor,
    clean_correct: Tensor,
    success: Tensor,
    clean_norm: Tensor | None = None,
    *,
    p: float = 2.0,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    attack: str = "",
) -> DistanceStats:
    """Eq. (13) statistics of per-sample minimal perturbation norms (see :class:`DistanceStats`).

    Args:
        norm: ``||r(x)||_p`` per sample.
        labels: the true class of each sample (for the per-class breakdown).
        clean_correct: whether each clean sample is correctly classified (others are left out).
        success: whether the attack found an adversarial example.
        clean_norm: ``||x||_p`` per sample, for the relative norm (NaN statistics when omitted).
        quantiles: levels in [0, 1].
    """
    if any(not 0 <= q <= 1 for q in quantiles):
        raise ConfigError(f"quantile levels must lie in [0, 1], got {list(quantiles)}")
    norm = torch.as_tensor(norm).double().cpu().flatten()
    labels = torch.as_tensor(labels).long().cpu().flatten()
    correct = torch.as_tensor(clean_correct).bool().cpu().flatten()
    success = torch.as_tensor(success).bool().cpu().flatten()
    if not (norm.numel() == labels.numel() == correct.numel() == success.numel()):
        raise InputError("norm, labels, clean_correct and success must have one entry per sample")
    found = correct & success & torch.isfinite(norm)
    v = norm[found]
    mean, median, std = _stats(v)
    qs = {f"{q:g}": (float(torch.quantile(v, q)) if v.numel() else math.nan) for q in quantiles}
    if clean_norm is not None:
        cn = torch.as_tensor(clean_norm).double().cpu().flatten()
        rel = v / cn[found].clamp_min(1e-12)
        rel_mean, rel_median, _ = _stats(rel)
    else:
        rel_mean = rel_median = math.nan
    per_class: dict[str, dict[str, float]] = {}
    for c in torch.unique(labels[correct]).tolist():
        in_c = correct & (labels == c)
        vc = norm[in_c & found]
        m, med, _ = _stats(vc)
        per_class[str(c)] = {"n": int(in_c.sum()), "n_found": int(vc.numel()), "mean": m, "median": med}
    n = int(correct.sum())
    return DistanceStats(p=float(p), n=n, n_found=int(found.sum()), n_failed=n - int(found.sum()), mean=mean,
                         median=median, std=std, quantiles=qs, relative_mean=rel_mean, relative_median=rel_median,
                         per_class=per_class, attack=attack)


def stats_of(result: AttackResult, *, quantiles: Sequence[float] = DEFAULT_QUANTILES) -> DistanceStats:
    """Eq. (13) statistics of one batch's :class:`~robustlens.attacks.base.AttackResult` (minimal-norm)."""
    if not result.minimal:
        raise ConfigError("distance statistics need a minimal-norm attack result (DeepFool, FMN, C&W...)")
    return distance_stats(result.norm, result.labels, result.clean_correct, result.success,
                          lp_norm(result.clean, result.p), p=result.p, quantiles=quantiles, attack=result.attack)


# ---------------------------------------------------------------------------------------------- data-set runs
def _materialize(data: Any) -> Any:
    """Turn an iterable loader of ``(x, y)`` batches (e.g. a ``torch.utils.data.DataLoader``) into tensors."""
    if isinstance(data, torch.utils.data.DataLoader):
        xs, ys = [], []
        for batch in data:
            if isinstance(batch, (tuple, list)) and len(batch) >= 2:
                xs.append(torch.as_tensor(batch[0]))
                ys.append(torch.as_tensor(batch[1]))
            else:
                xs.append(torch.as_tensor(batch))
        if not xs:
            raise InputError("the loader yielded no batches: nothing to evaluate")
        return (torch.cat(xs), torch.cat(ys)) if ys else torch.cat(xs)
    return data


def _sub_state(state_dir: str | os.PathLike[str] | None, name: str) -> str | None:
    return None if state_dir is None else str(Path(state_dir) / name)


def _span(clf: Classifier) -> float:
    return clf.bounds[1] - clf.bounds[0]


def _smoke_minimal(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> MinimalNormEvaluation:
    from .attacks.deepfool import DeepFool

    return evaluate_minimal(clf, (x, y), DeepFool(norm=2, max_iter=5), batch_size=max(1, x.shape[0] // 2),
                            seed=seed, progress=False)


@register_analysis("evaluate-minimal", kind="metrics", smoke=_smoke_minimal,
                   summary="a minimal-norm attack over a data set: eq. (13) statistics and the eq. (12) curve")
def evaluate_minimal(
    clf: Classifier,
    data: Any,
    attack: MinimalNormAttack,
    *,
    eps: Sequence[float] | None = None,
    batch_size: int = 128,
    seed: int = 0,
    target: str | None = None,
    indices: Tensor | Sequence[int] | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    state_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    invalid: str = "raise",
) -> MinimalNormEvaluation:
    """Run a minimal-norm attack (eq. 8-9) once over a data set: eq. (13) statistics and the eq. (12) curve.

    Args:
        clf: the classifier.
        data: ``(x, y)`` tensors, a map-style dataset, or a ``DataLoader`` (see :func:`run_evaluation`).
        attack: a minimal-norm attack (DeepFool, SparseFool, CarliniWagner, FMN, FAB, DDN...).
        eps: the grid of the robust-accuracy curve (default: 50 points up to the largest norm found).
        batch_size: samples per attack call and per checkpoint.
        seed: seed of the attack's random choices (per-sample streams keyed by dataset index).
        target: ``None`` (untargeted), ``"random"`` or ``"least-likely"``.
        indices: evaluate only these dataset indices.
        state_dir, resume, overwrite, progress: checkpointing, as in :func:`run_evaluation`.
        invalid: ``"raise"`` (non-finite clean logits are an error) or ``"mark"`` (those samples count as
            misclassified), as in the attack call.

    Raises :class:`~robustlens.InputError` when the attack stopped, on a NaN or Inf gradient, on a correctly
    classified sample it did not fool (its distance to the boundary is unknown).

    Example:
        >>> import torch
        >>> from robustlens import Classifier
        >>> from robustlens.attacks import DeepFool
        >>> from robustlens.metrics import evaluate_minimal
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> clf = Classifier(torch.nn.Linear(20, 3))
        >>> x = torch.rand(32, 20)
        >>> ev = evaluate_minimal(clf, (x, clf.predict(x)), DeepFool(norm=2), batch_size=16, progress=False)
        >>> ev.stats.n, ev.stats.n_failed, ev.curve.clean_accuracy
        (32, 0, 1.0)
        >>> float(ev.robust_accuracy([0.0])[0])
        1.0
    """
    if not isinstance(attack, MinimalNormAttack):
        raise ConfigError(
            f"{type(attack).__name__} is not a minimal-norm attack; use robust_accuracy() with a factory "
            "eps -> attack for eps-bounded attacks"
        )
    p = attack.p

    def fn(bx: Tensor, by: Tensor | None, bi: Tensor) -> dict[str, Tensor]:
        res = attack(clf, bx, by, target=target, seed=seed, indices=bi, invalid=invalid)
        q = res.queries
        n = bx.shape[0]
        return {
            "norm": res.norm, "success": res.success, "clean_correct": res.clean_correct, "labels": res.labels,
            "clean_norm": lp_norm(res.clean, p), "stopped": _stopped(res),
            "forward": torch.full((n,), q.get("forward", 0) / n, dtype=torch.float64),
            "backward": torch.full((n,), q.get("backward", 0) / n, dtype=torch.float64),
        }

    config = {"entry": "evaluate_minimal", "attack": attack.name, "settings": attack.settings,
              "norm": norm_name(p), "target": target}
    ev = run_evaluation(fn, _materialize(data), state_dir=state_dir, batch_size=batch_size, config=config,
                        seed=seed, model=clf, indices=indices, resume=resume, overwrite=overwrite,
                        progress=progress, desc=attack.name)
    o = ev.outputs
    check_undecided(o["stopped"], o["clean_correct"], o["success"], attack.name, ev.indices)
    stats = distance_stats(o["norm"], o["labels"], o["clean_correct"], o["success"], o["clean_norm"], p=p,
                           quantiles=quantiles, attack=attack.name)
    curve = robust_accuracy_curve(o["norm"], o["success"], o["clean_correct"], eps, p=p, attack=attack.name)
    return MinimalNormEvaluation(
        norm=o["norm"], success=o["success"], clean_correct=o["clean_correct"], labels=o["labels"],
        clean_norm=o["clean_norm"], indices=ev.indices, stats=stats, curve=curve,
        queries={"forward": float(o["forward"].sum()), "backward": float(o["backward"].sum())},
        settings={"norm": norm_name(p), **attack.settings},
    )


def _stopped(res: AttackResult) -> Tensor:
    stopped = getattr(res, "stopped", None)
    return stopped if stopped is not None else torch.zeros_like(res.success)


def _smoke_robust(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> RobustAccuracyCurve:
    from .attacks.pgd import PGD

    eps = 0.05 * _span(clf)
    return robust_accuracy(clf, (x, y), PGD(eps=eps, steps=3), eps, batch_size=max(1, x.shape[0] // 2), seed=seed,
                           progress=False)


@register_analysis("robust-accuracy", kind="metrics", smoke=_smoke_robust,
                   summary="robust accuracy (eq. 12) over a data set at each eps")
def robust_accuracy(
    clf: Classifier,
    data: Any,
    attack: Attack | AttackFactory,
    eps: float | Sequence[float],
    *,
    batch_size: int = 128,
    seed: int = 0,
    target: str | None = None,
    indices: Tensor | Sequence[int] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    invalid: str = "raise",
) -> RobustAccuracyCurve:
    """Robust accuracy (paper eq. 12) over a data set at each eps.

    Args:
        attack: a minimal-norm attack (one run answers every eps), an eps-bounded attack (its own eps only; any
            registered one, e.g. ``make_attack("autoattack", eps=8/255)``), or a factory ``eps -> attack`` building an
            eps-bounded attack per eps (e.g. ``lambda e: PGD("Linf", e)``); each eps is then a separate resumable
            run in ``state_dir/eps_<i>``.
        eps: one budget or a grid.
        Other arguments: as in :func:`evaluate_minimal`.
    """
    grid = _as_list(eps)
    if isinstance(attack, MinimalNormAttack):
        ev = evaluate_minimal(clf, data, attack, eps=grid, batch_size=batch_size, seed=seed, target=target,
                              indices=indices, state_dir=state_dir, resume=resume, overwrite=overwrite,
                              progress=progress, invalid=invalid)
        return ev.curve
    if isinstance(attack, BoundedAttack):
        if any(abs(e - attack.eps) > 1e-12 for e in grid):
            raise ConfigError(
                f"this {type(attack).__name__} is bounded at eps={attack.eps}; pass a factory such as "
                f"lambda e: {type(attack).__name__}(..., eps=e) to evaluate other eps values"
            )

        def same(e: float, a: Attack = attack) -> Attack:
            return a

        factory: AttackFactory = same
    elif isinstance(attack, Attack) or not callable(attack):
        raise ConfigError("attack must be a minimal-norm attack, an eps-bounded attack, or a factory eps -> attack")
    else:
        factory = attack
    materialized = _materialize(data)
    accs: list[float] = []
    clean = math.nan
    name, p, n = "", INF, 0
    for i, e in enumerate(grid):
        att = factory(e)
        got = getattr(att, "eps", None)
        if isinstance(att, MinimalNormAttack) or not callable(att) or got is None:
            raise ConfigError(f"the factory returned a {type(att).__name__}, not an eps-bounded attack")
        if abs(float(got) - e) > 1e-12:
            raise ConfigError(f"the factory built an attack with eps={got} when asked for eps={e}")

        def fn(bx: Tensor, by: Tensor | None, bi: Tensor, att: Any = att) -> dict[str, Tensor]:
            extra = {} if invalid == "raise" else {"invalid": invalid}  # a factory's callable may not take it
            res = att(clf, bx, by, target=target, seed=seed, indices=bi, **extra)
            return {"success": res.success, "clean_correct": res.clean_correct, "stopped": _stopped(res)}

        config = {"entry": "robust_accuracy", "attack": att.name, "settings": getattr(att, "settings", {}), "eps": e,
                  "target": target}
        out = run_evaluation(fn, materialized, state_dir=_sub_state(state_dir, f"eps_{i}"), batch_size=batch_size,
                            config=config, seed=seed, model=clf, indices=indices, resume=resume,
                            overwrite=overwrite, progress=progress, desc=f"{att.name} eps={e:g}")
        ok = out["clean_correct"].bool()
        check_undecided(out["stopped"], ok, out["success"], att.name, out.indices)
        accs.append(float((ok & ~out["success"].bool()).double().mean()))
        clean, name, p, n = float(ok.double().mean()), att.name, float(getattr(att, "p", INF)), int(ok.numel())
    order = sorted(range(len(grid)), key=lambda k: grid[k])
    return RobustAccuracyCurve(eps=[grid[k] for k in order], robust_accuracy=[accs[k] for k in order],
                               clean_accuracy=clean, p=p, attack=name, n=n, source="bounded")


__all__ = [
    "DistanceStats",
    "MinimalNormEvaluation",
    "RobustAccuracyCurve",
    "distance_stats",
    "evaluate_minimal",
    "robust_accuracy",
    "robust_accuracy_curve",
    "stats_of",
]
