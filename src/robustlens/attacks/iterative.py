"""The one iterative loop of the gradient-based eps-bounded attacks (eq. (10)-(11) of Ortiz-Jimenez, Modas,
Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and Improving Deep Learning through
Adversarial Robustness", Proc. IEEE 2021).

FGSM, PGD and APGD all maximise a loss inside the ball ``||r||_p <= eps`` (eq. 10-11), intersected with the data
box (footnote 1), by repeating: evaluate loss and gradient, take a step, project. They differ only in the step,
so they share this loop and plug in a :class:`Stepper`.

The loop owns everything else:

- per-sample random start inside the ball from :class:`~robustlens.seeding.SampleRNG` (batch-independent);
- restarts, run only on the samples not fooled yet;
- projection onto the eps-ball (``norms.project``) and the bounds;
- success tracking from the logits that ``clf.value_and_grad`` already returns, so no extra forward pass is spent
  per step: a step costs exactly one forward and one backward pass, and the last iterate is checked once;
- active-sample masking: with ``early_stop`` a sample leaves the batch at its first adversarial iterate and costs
  nothing afterwards (safe here because the result of an eps-bounded attack only records *whether* the ball holds
  an adversarial example; pass ``early_stop=False`` to keep iterating and return the adversarial iterate of
  highest loss instead);
- a sample whose gradient (or loss) is NaN or Inf stops, returned as NaN (:func:`robustlens.decision.stop`) unless it
  already has an adversarial iterate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..classifier import Classifier
from ..decision import Criterion, stop
from ..errors import ConfigError
from ..norms import INF, project, random_in_ball, steepest_direction
from ..ops import finite_rows, logit_margin
from ..seeding import SampleRNG

LossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""``(logits, labels, loss_targets) -> per-sample loss to maximise``."""
Projector = Callable[[Tensor, Tensor], Tensor]
"""``(clean, candidate) -> candidate projected onto the eps-ball around clean and the bounds``."""


def ce_loss(logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
    """Cross-entropy (eq. 2) of the label, or minus the cross-entropy of the target when targeted."""
    if targets is None:
        return F.cross_entropy(logits, labels, reduction="none")
    return -F.cross_entropy(logits, targets, reduction="none")


def dlr_loss(logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
    """Difference of Logits Ratio (Croce & Hein, 2020), invariant to shifts and rescaling of the logits.

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; targeted:
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, with ``z_pi1 >= z_pi2 >= ...`` the sorted logits.
    """
    c = logits.shape[1]
    srt = logits.sort(1, descending=True).values
    if targets is None:
        if c < 3:
            raise ConfigError("the DLR loss needs at least 3 classes; use loss='ce'")
        return -logit_margin(logits, labels) / (srt[:, 0] - srt[:, 2] + 1e-12)
    if c < 4:
        raise ConfigError("the targeted DLR loss needs at least 4 classes; use loss='ce'")
    zy = logits.gather(1, labels[:, None]).squeeze(1)
    zt = logits.gather(1, targets[:, None]).squeeze(1)
    return -(zy - zt) / (srt[:, 0] - 0.5 * (srt[:, 2] + srt[:, 3]) + 1e-12)


LOSSES: dict[str, LossFn] = {"ce": ce_loss, "dlr": dlr_loss}


def resolve_bounded_loss(loss: str | LossFn) -> LossFn:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ConfigError(f"unknown loss {loss!r}; use 'ce', 'dlr' or a callable (logits, labels, targets)")
    return LOSSES[loss]


class Stepper(ABC):
    """The update rule of an iterative attack: the only part that differs between FGSM, PGD and APGD.

    ``start`` returns the per-sample state (tensors whose first dimension is the batch; the loop drops the rows of
    samples that are done); ``step`` maps the current iterate and its gradient to the next (projected) iterate.
    """

    def start(self, clean: Tensor, x0: Tensor) -> dict[str, Tensor]:
        return {}

    @abstractmethod
    def step(
        self,
        it: int,
        clean: Tensor,
        xk: Tensor,
        grad: Tensor,
        loss: Tensor,
        state: dict[str, Tensor],
        proj: Projector,
    ) -> Tensor:
        """The next (projected) iterate."""


@dataclass
class LoopConfig:
    """Settings of :func:`iterate` shared by every iterative attack."""

    p: float
    eps: float
    steps: int
    restarts: int = 1
    random_start: bool = False
    early_stop: bool = True
    clip: bool = True
    progress: bool = False
    name: str = "attack"


def make_projector(clf: Classifier, p: float, eps: float, clip: bool) -> Projector:
    """Projection onto the eps-ball (``norms.project``) then the bounds: exact for Linf, feasible for L1/L2."""

    def proj(clean: Tensor, z: Tensor) -> Tensor:
        out = clean + project(z - clean, p, eps)
        return clf.clip(out) if clip else out

    return proj


def iterate(
    clf: Classifier,
    x: Tensor,
    criterion: Criterion,
    rng: SampleRNG,
    cfg: LoopConfig,
    stepper: Stepper,
    loss: LossFn,
    loss_targets: Tensor | None = None,
) -> Tensor:
    """Run an iterative eps-bounded attack (eq. 10-11) and return one candidate per sample.

    A sample's candidate is its first adversarial iterate (``early_stop``), its adversarial iterate of highest
    loss (``early_stop=False``), or else the last iterate of the last restart (the caller checks it). Each step
    costs one ``clf.value_and_grad`` on the samples still active; a restart that is not the last costs one more
    forward pass to check its final iterate.

    Args:
        loss_targets: classes the loss aims at (targeted losses); defaults to ``criterion.targets``. AutoAttack's
            APGD-T uses a targeted loss with an untargeted criterion.
    """
    if cfg.steps < 1:
        raise ConfigError(f"steps must be >= 1, got {cfg.steps}")
    if cfg.restarts < 1:
        raise ConfigError(f"restarts must be >= 1, got {cfg.restarts}")
    n = x.shape[0]
    out = x.clone()
    if n == 0 or cfg.eps == 0:
        return out
    if loss_targets is None:
        loss_targets = criterion.targets
    proj = make_projector(clf, cfg.p, cfg.eps, cfg.clip)
    found = torch.zeros(n, dtype=torch.bool, device=x.device)
    stopped = torch.zeros(n, dtype=torch.bool, device=x.device)
    best_adv_loss = torch.full((n,), float("-inf"), device=x.device, dtype=x.dtype)
    bar = tqdm(total=cfg.steps * cfg.restarts, desc=cfg.name, disable=not cfg.progress, leave=False)
    for r in range(cfg.restarts):
        act = (~found & ~stopped).nonzero().flatten()
        if act.numel() == 0:
            break
        clean = x[act]
        labels = criterion.labels[act]
        crit = criterion[act]
        ltg = None if loss_targets is None else loss_targets[act]
        if cfg.random_start:
            xk = proj(clean, clean + random_in_ball(clean, cfg.p, cfg.eps, rng.subset(act), key=("start", cfg.name, r)))
        else:
            xk = clean.clone()
        state = stepper.start(clean, xk)
        for it in range(cfg.steps):
            def objective(z: Tensor, lb: Tensor = labels, tg: Tensor | None = ltg) -> Tensor:
                return loss(z, lb, tg)

            values, logits, grad = clf.value_and_grad(xk, objective)
            adv = crit.is_adversarial(logits)
            broken = ~(finite_rows(grad) & finite_rows(values)) & ~adv
            if bool(broken.any()):  # a NaN or Inf gradient or loss: the sample cannot go on
                hit = act[broken]
                keep_found = found[hit]
                stop(out, hit[~keep_found])
                stopped[hit] = True
                keep = ~broken
                act, clean, xk, grad, adv = act[keep], clean[keep], xk[keep], grad[keep], adv[keep]
                values, labels, crit = values[keep], labels[keep], crit[keep]
                ltg = None if ltg is None else ltg[keep]
                state = {k: v[keep] for k, v in state.items()}
                if act.numel() == 0:
                    bar.update(cfg.steps - it)
                    break
            if cfg.early_stop:
                if bool(adv.any()):
                    hit = act[adv]
                    out[hit] = xk[adv]
                    found[hit] = True
                    keep = ~adv
                    act, clean, xk, grad = act[keep], clean[keep], xk[keep], grad[keep]
                    values, labels = values[keep], labels[keep]
                    crit = crit[keep]
                    ltg = None if ltg is None else ltg[keep]
                    state = {k: v[keep] for k, v in state.items()}
                    if act.numel() == 0:
                        bar.update(cfg.steps - it)
                        break
            else:
                better = adv & (values > best_adv_loss[act])
                if bool(better.any()):
                    hit = act[better]
                    out[hit] = xk[better]
                    found[hit] = True
                    best_adv_loss[hit] = values[better]
            xk = stepper.step(it, clean, xk, grad, values, state, proj)
            bar.update(1)
        if act.numel() == 0:
            continue
        pending = act[~found[act]]
        sel = ~found[act]
        if r == cfg.restarts - 1:
            out[pending] = xk[sel]
        else:
            with torch.no_grad():
                logits = clf.forward(xk[sel])
            adv = criterion[pending].is_adversarial(logits)
            out[pending[adv]] = xk[sel][adv]
            found[pending[adv]] = True
    bar.close()
    return out


def step_direction(grad: Tensor, p: float) -> Tensor:
    """Unit-Lp ascent direction of the FGSM/PGD/APGD steps for Linf and L2 (``norms.steepest_direction``)."""
    if p not in (INF, 2.0):
        raise ConfigError(f"this step is defined for Linf and L2, got L{p}")
    return steepest_direction(grad, p)


__all__ = [
    "LoopConfig",
    "Stepper",
    "ce_loss",
    "dlr_loss",
    "iterate",
    "make_projector",
    "resolve_bounded_loss",
    "step_direction",
]
