"""Universal adversarial perturbations (eq. 17, Fig. 5 of Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism
in the Face of Adversity: Understanding and Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021).

One perturbation ``v`` with ``||v||_p <= xi`` that changes the decision of most inputs,
``P(f(x + v) != f(x)) >= 1 - delta`` (Moosavi-Dezfooli, Fawzi, Fawzi and Frossard, "Universal adversarial
perturbations", CVPR 2017). The algorithm passes over the data in a seeded random order; for every input that
``v`` does not fool yet it adds the minimal perturbation (DeepFool, L2) that sends ``x + v`` across the boundary,
then projects ``v`` back onto the Lp ball of radius ``xi``. It stops when the fooling rate on the data reaches
``1 - delta`` or after ``max_passes`` passes.

Batched: the inputs are visited in chunks of ``batch_size``; the DeepFool steps of the still-unfooled inputs of a
chunk are computed in one batched call at the current ``v`` and then applied one after the other with a projection
after each (with ``batch_size=1`` this is exactly the original sequential algorithm).

Whether ``v`` fools an input is decided by :func:`robustlens.decision.decide` (finite logits, the decision at the
clipped point, the majority over draws for a stochastic classifier); an inner DeepFool step that stopped on a NaN or
Inf gradient is left out of ``v`` and reported in a warning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..analyses import register_analysis
from ..checks import COUNT, NON_NEGATIVE, OPTIONAL_COUNT, Number, checked
from ..classifier import Classifier
from ..decision import Criterion, decide, warn_rejected
from ..errors import ConfigError
from ..norms import INF, lp_norm, norm_name, parse_norm, project
from ..ops import finite_rows
from ..results import Result
from ..seeding import SampleRNG, generator
from .deepfool import DeepFool


@dataclass
class UniversalResult(Result):
    """A universal perturbation and how well it fools.

    Attributes:
        perturbation: ``v`` with the input shape (no batch dimension).
        p, eps: the norm and radius ``xi`` of the constraint.
        fooling_rate: fraction of the fitting inputs whose decision ``f(clip(x + v))`` differs from ``f(x)``.
        history: fooling rate on the fitting inputs after each pass; ``perturbation`` is the ``v`` of the best pass.
        passes: passes over the data used; queries: forward and backward passes (per-sample counts).
        seed: seed of the data order.
    """

    perturbation: Tensor
    p: float
    eps: float
    fooling_rate: float
    history: list[float]
    passes: int
    queries: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def energy_fraction(self, basis: Tensor) -> float:
        """Fraction of ``||v||_2^2`` inside ``span(basis)`` (``basis``: ``(D, k)`` orthonormal columns).

        A random vector puts ``k / D`` of its energy there in expectation (Sec. II-C: the UAP's energy concentrates
        in the shared high-curvature / normal subspace).
        """
        v = self.perturbation.flatten().to(basis)
        return float((basis.T @ v).pow(2).sum() / v.pow(2).sum().clamp_min(1e-30))


def fooled_by(clf: Classifier, x: Tensor, clean: Tensor, v: Tensor, *, clip: bool = True,
              batch_size: int | None = None) -> Tensor:
    """Per input of ``x`` (validated, with clean decisions ``clean``), whether ``x + v`` (clipped by default) changes
    the decision, as :func:`robustlens.decision.decide` rules."""
    xv = clf.clip(x + v) if clip else x + v
    d = decide(clf, x, xv, Criterion(clean), p=2.0, bounds=clip, batch_size=batch_size)
    warn_rejected("fooling_rate", d.stopped, d.nonfinite_logits, d.outside, stacklevel=4)
    return d.success


def fooling_rate(clf: Classifier, x: Tensor, v: Tensor, *, clip: bool = True, batch_size: int | None = None) -> float:
    """``P(f(x + v) != f(x))`` over the inputs ``x`` (eq. 17), with ``x + v`` clipped to the bounds by default."""
    x, _ = clf.validate(x)
    v = v.to(x).reshape(1, *x.shape[1:])
    clean = clf.predict(x, batch_size=batch_size, validate=False)
    return float(fooled_by(clf, x, clean, v, clip=clip, batch_size=batch_size).float().mean())


def random_fooling_rate(
    clf: Classifier, x: Tensor, p: float | str, eps: float, *, n_draws: int = 5, seed: int = 0,
    batch_size: int | None = None,
) -> float:
    """Fooling rate of random perturbations on the sphere of radius ``eps`` (L2: Gaussian direction; Linf: a
    random sign vector, a vertex of the cube), averaged over ``n_draws`` draws: the baseline a UAP must beat."""
    pn = parse_norm(p)
    d = x[0].numel()
    rates = []
    for k in range(n_draws):
        g = generator(seed, "random-universal", k)
        if pn == INF:
            v = eps * torch.randint(0, 2, (d,), generator=g).float().mul(2).sub(1)
        elif pn == 2:
            v = torch.randn(d, generator=g)
            v = eps * v / v.norm()
        else:
            raise ConfigError("random baseline implemented for p in 2, inf")
        rates.append(fooling_rate(clf, x, v.view(x.shape[1:]), batch_size=batch_size))
    return float(sum(rates) / len(rates))


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> UniversalResult:
    span = clf.bounds[1] - clf.bounds[0]
    return UniversalPerturbation(eps=0.1 * span, max_passes=1, deepfool_iter=3, batch_size=4, progress=False).fit(
        clf, x, seed=seed)


@register_analysis("universal-perturbation", kind="attack", smoke=_smoke,
                   summary="a universal adversarial perturbation (eq. 17) and its fooling rate")
class UniversalPerturbation:
    """The universal perturbation algorithm of Moosavi-Dezfooli et al. (CVPR 2017), paper eq. (17).

    Args:
        norm: the constraint's norm (2 or inf).
        eps: the radius ``xi`` of the constraint.
        delta: target fooling rate ``1 - delta`` on the fitting data.
        max_passes: maximum passes over the data.
        overshoot: DeepFool's overshoot of the inner step (a larger value pushes inputs further past the boundary,
            so that later updates are less likely to undo them).
        deepfool_iter: DeepFool's iterations per inner step.
        batch_size: inputs whose inner steps are computed together (1 = the sequential original).
        candidates: classes DeepFool considers per step.
        progress: show a tqdm bar.

    Example:
        >>> res = UniversalPerturbation(norm="inf", eps=0.3).fit(clf, x_train, seed=0)
        >>> fooling_rate(clf, x_test, res.perturbation)
    """

    @checked(eps=NON_NEGATIVE, delta=Number(low=0, high=1, high_open=True), max_passes=COUNT,
             overshoot=NON_NEGATIVE, deepfool_iter=COUNT, batch_size=COUNT, candidates=OPTIONAL_COUNT)
    def __init__(
        self,
        norm: float | str = INF,
        eps: float = 0.1,
        *,
        delta: float = 0.2,
        max_passes: int = 5,
        overshoot: float = 0.2,
        deepfool_iter: int = 10,
        batch_size: int = 32,
        candidates: int | None = 10,
        progress: bool = True,
    ) -> None:
        self.p = parse_norm(norm)
        if self.p not in (2.0, INF):
            raise ConfigError(f"universal perturbations are implemented for L2 and Linf, got {norm_name(self.p)}")
        self.eps = float(eps)
        self.delta = float(delta)
        self.max_passes = int(max_passes)
        self.overshoot = float(overshoot)
        self.deepfool_iter = int(deepfool_iter)
        self.batch_size = int(batch_size)
        self.candidates = candidates
        self.progress = progress

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "norm": norm_name(self.p), "eps": self.eps, "delta": self.delta, "max_passes": self.max_passes,
            "overshoot": self.overshoot, "deepfool_iter": self.deepfool_iter, "batch_size": self.batch_size,
            "candidates": self.candidates,
        }

    def fit(
        self, clf: Classifier, x: Tensor, y: Tensor | Sequence[int] | None = None, *, seed: int = 0,
        init: Tensor | None = None,
    ) -> UniversalResult:
        """Compute a universal perturbation on the inputs ``x`` (labels are not needed: eq. 17 compares with the
        clean decision; ``y`` is accepted for symmetry with attacks and ignored)."""
        x, _ = clf.validate(x)
        with clf.random_state(seed):  # the randomness of a stochastic classifier follows the seed
            return self._fit(clf, x, seed, init)

    def _fit(self, clf: Classifier, x: Tensor, seed: int, init: Tensor | None) -> UniversalResult:
        n, shape = x.shape[0], x.shape[1:]
        start = clf.counter.snapshot()
        clean = clf.predict(x, validate=False)
        v = torch.zeros(1, *shape, dtype=x.dtype, device=x.device) if init is None else init.to(x).view(1, *shape)
        v = project(v, self.p, self.eps)
        inner = DeepFool(norm=2, overshoot=self.overshoot, max_iter=self.deepfool_iter, candidates=self.candidates)
        history: list[float] = []
        target = 1.0 - self.delta
        rate = self._rate(clf, x, clean, v)
        best_rate, best_v = rate, v.clone()
        passes = 0
        bar = tqdm(total=self.max_passes * n, desc="universal perturbation", disable=not self.progress, leave=False)
        stopped, attempts = 0, 0
        with clf.analysis_mode():
            while rate < target and passes < self.max_passes:
                order = torch.randperm(n, generator=generator(seed, "uap-order", passes)).to(x.device)
                for s in range(0, n, self.batch_size):
                    idx = order[s : s + self.batch_size]
                    xv = clf.clip(x[idx] + v)
                    with torch.no_grad():
                        still = ~Criterion(clean[idx]).is_adversarial(clf.forward(xv))
                    bar.update(idx.numel())
                    if not bool(still.any()):
                        continue
                    sel = idx[still]
                    xs = xv[still]
                    adv = inner.run(clf, xs, Criterion(clean[sel]), SampleRNG(seed, sel.tolist()))
                    steps = (adv - xs).detach()
                    finite = finite_rows(steps)  # a stopped inner step (NaN) never enters v
                    stopped += int((~finite).sum())
                    attempts += int(finite.numel())
                    ok = finite & (lp_norm(steps.nan_to_num(0.0), 2.0) > 0)
                    for dv in steps[ok]:
                        v = project(v + dv[None], self.p, self.eps)
                passes += 1
                rate = self._rate(clf, x, clean, v)
                history.append(rate)
                if rate > best_rate:  # a pass can undo earlier gains on a robust model: keep the best pass
                    best_rate, best_v = rate, v.clone()
        bar.close()
        if stopped:
            none = torch.zeros(attempts, dtype=torch.bool)
            warn_rejected("UniversalPerturbation's inner DeepFool", torch.arange(attempts) < stopped, none, none,
                          stacklevel=3)
        fwd, bwd = clf.counter.snapshot()
        return UniversalResult(
            perturbation=best_v[0].detach().cpu(), p=self.p, eps=self.eps, fooling_rate=best_rate, history=history,
            passes=passes, queries={"forward": fwd - start[0], "backward": bwd - start[1]}, seed=seed,
            settings=self.settings,
        )

    def _rate(self, clf: Classifier, x: Tensor, clean: Tensor, v: Tensor) -> float:
        if not x.shape[0]:
            return math.nan
        return float(fooled_by(clf, x, clean, v).float().mean())


__all__ = ["UniversalPerturbation", "UniversalResult", "fooled_by", "fooling_rate", "random_fooling_rate"]
