"""AutoAttack: the standard parameter-free ensemble for robust accuracy (Croce & Hein, 2020; paper eq. (12))."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..classifier import Classifier
from ..errors import ConfigError
from ..seeding import SampleRNG
from .apgd import APGD
from .base import AttackResult, Criterion
from .fab import FAB
from .norms import INF, check_eps, lp_norm, norm_name, parse_norm
from .square import Square


@dataclass
class AutoAttackResult(AttackResult):
    """An :class:`AttackResult` with the per-stage breakdown of the ensemble.

    ``stages`` holds, for each stage in order, its name, the robust accuracy after it (eq. 12), the samples it
    attacked, the samples it fooled, the forward/backward passes it used and its wall time in seconds.
    """

    stages: list[dict[str, Any]] = field(default_factory=list)


def _target_ranks(logits: Tensor, rank: int) -> Tensor:
    """The class ranked ``rank`` by the clean logits (1 = the top class)."""
    return logits.argsort(1, descending=True)[:, rank - 1]


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
) -> AutoAttackResult:
    """Robust accuracy (eq. 12) under the standard AutoAttack ensemble (Croce & Hein, ICML 2020).

    Runs, each stage only on the samples still robust: APGD-CE (100 iterations), APGD-T (targeted DLR loss towards
    each of the ``n_target_classes`` classes ranked 2nd, 3rd, ... by the clean logits, 100 iterations each),
    FAB-T (the same targets, 100 iterations each) and Square (5000 queries) -- the reference iteration counts.
    As in the reference, APGD-T and FAB-T count a sample as fooled when it is misclassified, whichever class it
    lands in. Square is skipped for inputs that are not images. A sample leaves every stage as soon as it is fooled,
    so the result equals the reference's per-sample worst case while fooled samples stop costing passes.

    Args:
        clf: the classifier.
        x: inputs in the data range; never modified.
        y: true labels (the predictions when omitted).
        norm: ``"Linf"`` or ``"L2"``.
        eps: the budget.
        version: ``"standard"`` (the only version implemented).
        seed: seed of the random starts and of Square's proposals (per-sample streams).
        indices: dataset index of each sample (random draws then do not depend on batching).
        n_target_classes: targets of APGD-T and FAB-T (9 in the standard version).
        progress: show a progress bar over the stages.

    Returns:
        An :class:`AutoAttackResult`: the per-sample worst case (the first adversarial example found), its
        success, the passes used, and the robust accuracy after each stage in ``stages``.
    """
    if version != "standard":
        raise ConfigError(f"autoattack version {version!r} is not implemented; use version='standard'")
    p = parse_norm(norm)
    if p not in (INF, 2.0):
        raise ConfigError(f"autoattack supports norm='Linf' or 'L2', got {norm!r}")
    eps = check_eps(eps)
    x, y_checked = clf.validate(x, None if y is None else torch.as_tensor(y))
    x = x.detach().clone()
    n = x.shape[0]
    rng = SampleRNG(seed, indices, n=n)
    start = clf.counter.snapshot()
    stages: list[dict[str, Any]] = []
    with clf.analysis_mode(), torch.no_grad():
        clean_logits = clf.forward(x)
        labels = clean_logits.argmax(1) if y_checked is None else y_checked
        clean_correct = clean_logits.argmax(1) == labels
        robust = clean_correct.clone()
        adv = x.clone()
        c = clean_logits.shape[1]
        n_targets = min(n_target_classes, c - 1)
        apgd_ce = APGD(p, eps, steps=100, loss="ce")
        apgd_t = APGD(p, eps, steps=100, loss="dlr")
        fab_t = FAB(p, steps=100, eps=eps)
        square = Square(p, eps, queries=5000, p_init=0.8)
        plan: list[tuple[str, Any]] = [("apgd-ce", None)]
        if c >= 4:
            plan += [("apgd-t", r) for r in range(2, n_targets + 2)]
        plan += [("fab-t", r) for r in range(2, n_targets + 2)]
        plan += [("square", None)]
        groups = ["apgd-ce", "apgd-t", "fab-t", "square"]
        bar = tqdm(total=len(plan), desc="autoattack", disable=not progress)
        for group in groups:
            t0 = time.perf_counter()
            q0 = clf.counter.snapshot()
            attacked = int(robust.sum())
            for name, rank in [(a, r) for a, r in plan if a == group]:
                idx = robust.nonzero().flatten()
                if idx.numel() == 0 or (name == "square" and x.ndim != 4):  # Square needs (N, C, H, W) images
                    bar.update(1)
                    continue
                xs, crit, srng = x[idx], Criterion(labels[idx]), rng.subset(idx)
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
                cand = clf.clip(cand)
                ok = crit.is_adversarial(clf.forward(cand)) & (lp_norm(cand - xs, p) <= eps * (1 + 1e-6) + 1e-7)
                adv[idx[ok]] = cand[ok]
                robust[idx[ok]] = False
                bar.update(1)
            f1, b1 = clf.counter.snapshot()
            stages.append({
                "stage": group,
                "robust_accuracy": float(robust.float().mean()),
                "attacked": attacked,
                "fooled": attacked - int(robust.sum()),
                "queries": {"forward": f1 - q0[0], "backward": b1 - q0[1]},
                "seconds": time.perf_counter() - t0,
            })
        bar.close()
        final = clf.forward(adv)
    success = final.argmax(1) != labels
    adv = torch.where(success.view(-1, *([1] * (x.ndim - 1))), adv, x)
    nrm = lp_norm(adv - x, p)
    nrm = torch.where(success, nrm, torch.full_like(nrm, INF))
    fwd, bwd = clf.counter.snapshot()
    return AutoAttackResult(
        attack="autoattack",
        p=p,
        clean=x,
        adversarial=adv,
        labels=labels,
        success=success,
        clean_correct=clean_correct,
        norm=nrm,
        queries={"forward": fwd - start[0], "backward": bwd - start[1]},
        eps=eps,
        settings={"norm": norm_name(p), "version": version, "seed": seed, "n_target_classes": n_targets},
        stages=stages,
    )


__all__ = ["AutoAttackResult", "autoattack"]
