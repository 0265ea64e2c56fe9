"""AutoAttack: the standard parameter-free ensemble for robust accuracy (Croce & Hein, ICML 2020), the eq. (12)
evaluation of Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and
Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021.

:class:`AutoAttack` is an eps-bounded attack like any other (``make_attack("autoattack", eps=...)``, usable with
:func:`robustlens.metrics.robust_accuracy`); :func:`autoattack` is the one-call form.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checks import COUNT, NON_NEGATIVE, checked
from ..classifier import Classifier
from ..decision import Criterion, ball_slack, stop
from ..errors import ConfigError
from ..norms import INF, lp_norm
from ..ops import finite_rows, per_sample
from ..seeding import SampleRNG
from .apgd import APGD
from .base import ATTACKS, AttackResult, BoundedAttack
from .fab import FAB
from .square import Square

GROUPS = ("apgd-ce", "apgd-t", "fab-t", "square")


@dataclass
class AutoAttackResult(AttackResult):
    """An :class:`AttackResult` with the per-stage breakdown of the ensemble.

    ``stages`` holds, for each stage in order, its name, the robust accuracy after it (eq. 12, as the stage's own
    check saw it; ``success`` is the final decision), the samples it attacked, the samples it fooled, the
    forward/backward passes it used and its wall time in seconds.
    """

    stages: list[dict[str, Any]] = field(default_factory=list)


def _target_ranks(logits: Tensor, rank: int) -> Tensor:
    """The class ranked ``rank`` by the clean logits (1 = the top class)."""
    return logits.argsort(1, descending=True)[:, rank - 1]


@ATTACKS.register("autoattack", aliases=("aa",), minimal=False, norms=(2.0, INF), steps=None,
                  defaults={"progress": False}, summary="the standard AutoAttack ensemble (steps ignored)")
class AutoAttack(BoundedAttack):
    """The standard AutoAttack ensemble (Croce & Hein, ICML 2020): robust accuracy (eq. 12) at one eps.

    Runs, each stage only on the samples still robust: APGD-CE (100 iterations), APGD-T (targeted DLR loss towards
    each of the ``n_target_classes`` classes ranked 2nd, 3rd, ... by the clean logits, 100 iterations each),
    FAB-T (the same targets, 100 iterations each) and Square (5000 queries) -- the reference iteration counts.
    As in the reference, APGD-T and FAB-T count a sample as fooled when it is misclassified, whichever class it
    lands in. Square is skipped for inputs that are not images. A sample leaves every stage as soon as it is fooled,
    so the result equals the reference's per-sample worst case while fooled samples stop costing passes. The final
    success is decided, as for every attack, by :func:`robustlens.decision.decide` on the returned point.

    Args:
        norm: ``"Linf"`` or ``"L2"``.
        eps: the budget.
        version: ``"standard"`` (the only version implemented).
        n_target_classes: targets of APGD-T and FAB-T (9 in the standard version).
        progress: show a progress bar over the stages.

    Example:
        >>> import torch
        >>> from robustlens import Classifier
        >>> from robustlens.attacks import AutoAttack
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        >>> clf = Classifier(net, input_shape=(3, 8, 8))
        >>> x = torch.rand(4, 3, 8, 8)
        >>> res = AutoAttack("Linf", eps=8 / 255, n_target_classes=2, progress=False)(clf, x, clf.predict(x))
        >>> [s["stage"] for s in res.stages]
        ['apgd-ce', 'apgd-t', 'fab-t', 'square']
        >>> float(res.robust_accuracy()[0]) <= 1.0
        True
    """

    name: ClassVar[str] = "autoattack"
    targeted_ok: ClassVar[bool] = False

    @checked(eps=NON_NEGATIVE, n_target_classes=COUNT)
    def __init__(self, norm: float | str = INF, eps: float = 8 / 255, *, version: str = "standard",
                 n_target_classes: int = 9, progress: bool = True) -> None:
        super().__init__(norm, eps, clip=True)
        if version != "standard":
            raise ConfigError(f"autoattack version {version!r} is not implemented; use version='standard'")
        if self.p not in (INF, 2.0):
            raise ConfigError(f"autoattack supports norm='Linf' or 'L2', got L{self.p:g}")
        self.version = version
        self.n_target_classes = int(n_target_classes)
        self.progress = progress

    @property
    def settings(self) -> dict[str, Any]:
        return {"eps": self.eps, "version": self.version, "n_target_classes": self.n_target_classes}

    def _new_call_state(self) -> dict[str, Any]:
        """Per-stage counts summed over the chunks of one call, and the number of targets used."""
        return {"n_targets": self.n_target_classes,
                "stages": {g: {"attacked": 0, "fooled": 0, "robust": 0, "forward": 0, "backward": 0, "seconds": 0.0}
                           for g in GROUPS}}

    def _make_result(self, fields: dict[str, Any], state: Any) -> AttackResult:
        n = max(1, int(fields["clean"].shape[0]))
        stages = [{"stage": g, "robust_accuracy": s["robust"] / n, "attacked": s["attacked"], "fooled": s["fooled"],
                   "queries": {"forward": s["forward"], "backward": s["backward"]}, "seconds": s["seconds"]}
                  for g, s in state["stages"].items()]
        fields["settings"] = {**fields["settings"], "n_target_classes": state["n_targets"]}
        return AutoAttackResult(**fields, stages=stages)

    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        state = self._state if self._state is not None else self._new_call_state()
        with torch.no_grad():
            clean_logits = clf.forward(x)
            robust = ~criterion.is_adversarial(clean_logits)
            stopped = torch.zeros_like(robust)  # a stage stopped on a NaN or Inf gradient
            adv = x.clone()
            c = clean_logits.shape[1]
            n_targets = state["n_targets"] = min(self.n_target_classes, c - 1)
            p, eps = self.p, self.eps
            apgd_ce = APGD(p, eps, steps=100, loss="ce")
            apgd_t = APGD(p, eps, steps=100, loss="dlr")
            fab_t = FAB(p, steps=100, eps=eps)
            square = Square(p, eps, queries=5000, p_init=0.8)
            plan: list[tuple[str, Any]] = [("apgd-ce", None)]
            if c >= 4:
                plan += [("apgd-t", r) for r in range(2, n_targets + 2)]
            plan += [("fab-t", r) for r in range(2, n_targets + 2)]
            plan += [("square", None)]
            slack = eps * (1 + 1e-6) + ball_slack(x, p, clf.bounds)
            bar = tqdm(total=len(plan), desc="autoattack", disable=not self.progress)
            for group in GROUPS:
                t0 = time.perf_counter()
                q0 = clf.counter.snapshot()
                attacked = int(robust.sum())
                for name, rank in [(a, r) for a, r in plan if a == group]:
                    idx = robust.nonzero().flatten()
                    if idx.numel() == 0 or (name == "square" and x.ndim != 4):  # Square needs (N, C, H, W) images
                        bar.update(1)
                        continue
                    xs, crit, srng = x[idx], criterion[idx], rng.subset(idx.cpu())
                    if name == "apgd-ce":
                        cand = apgd_ce.attack(clf, xs, crit, srng)
                    elif name == "apgd-t":
                        cand = apgd_t.attack(clf, xs, crit, srng, loss_targets=_target_ranks(clean_logits[idx], rank),
                                             key=f"-t{rank}")
                    elif name == "fab-t":
                        cand = fab_t.attack(clf, xs, crit, srng, towards=_target_ranks(clean_logits[idx], rank),
                                            key=f"-t{rank}")
                    else:
                        cand = square.run(clf, xs, crit, srng)
                    stopped[idx[~finite_rows(cand)]] = True
                    cand = clf.clip(torch.where(per_sample(finite_rows(cand), cand), cand, xs))
                    ok = crit.is_adversarial(clf.forward(cand)) & (lp_norm(cand - xs, p) <= slack)
                    adv[idx[ok]] = cand[ok]
                    robust[idx[ok]] = False
                    bar.update(1)
                f1, b1 = clf.counter.snapshot()
                s = state["stages"][group]
                s["attacked"] += attacked
                s["fooled"] += attacked - int(robust.sum())
                s["robust"] += int(robust.sum())
                s["forward"] += f1 - q0[0]
                s["backward"] += b1 - q0[1]
                s["seconds"] += time.perf_counter() - t0
            bar.close()
        # a sample that a stage could not attack (NaN gradient) and no later stage fooled has unknown robustness
        return stop(adv, stopped & robust)


def autoattack(
    clf: Classifier,
    x: Tensor,
    y: Tensor | Sequence[int] | None = None,
    norm: float | str = "Linf",
    eps: float = 8 / 255,
    version: str = "standard",
    seed: int = 0,
    *,
    indices: Tensor | Sequence[int] | None = None,
    n_target_classes: int = 9,
    progress: bool = True,
    batch_size: int | None = None,
) -> AutoAttackResult:
    """Robust accuracy (eq. 12) under the standard AutoAttack ensemble: ``AutoAttack(norm, eps, ...)(clf, x, y)``.

    Args:
        clf, x, y: the classifier, inputs in the data range (never modified), true labels (predictions if omitted).
        norm, eps, version, n_target_classes, progress: as in :class:`AutoAttack`.
        seed: seed of the random starts and of Square's proposals (per-sample streams).
        indices: dataset index of each sample (random draws then do not depend on batching).
        batch_size: samples attacked together (default ``clf.batch_size``).

    Returns:
        An :class:`AutoAttackResult`: the per-sample worst case (the first adversarial example found), its
        success, the passes used, and the robust accuracy after each stage in ``stages``.

    Example (L2, on flat inputs, where the Square stage is skipped):
        >>> import torch
        >>> from robustlens import Classifier
        >>> from robustlens.attacks import autoattack
        >>> clf = Classifier(torch.nn.Linear(64, 10))
        >>> x = torch.rand(4, 64, generator=torch.Generator().manual_seed(0))
        >>> res = autoattack(clf, x, norm="L2", eps=0.5, n_target_classes=2, progress=False)
        >>> res.success.shape, [s["attacked"] for s in res.stages][-1] >= 0
        (torch.Size([4]), True)
    """
    attack = AutoAttack(norm, eps, version=version, n_target_classes=n_target_classes, progress=progress)
    res = attack(clf, x, y, seed=seed, indices=indices, batch_size=batch_size)
    assert isinstance(res, AutoAttackResult)
    return res


__all__ = ["AutoAttack", "AutoAttackResult", "autoattack"]
