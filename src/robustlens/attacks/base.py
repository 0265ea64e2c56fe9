"""The attack core: the ``Attack`` protocol, the adversarial criterion and the typed ``AttackResult``.

Two families (paper, Sec. II-B):

- :class:`MinimalNormAttack` solves eq. (8)-(9): the smallest Lp perturbation that changes the decision.
  Its result answers robust accuracy at every eps from one run (:meth:`AttackResult.robust_accuracy`).
- :class:`BoundedAttack` solves eq. (10)-(11): the worst loss within an Lp ball of radius eps.

Every attack is configured once and called on a batch, ``res = DeepFool(norm=2)(clf, x, y)``. The base class
validates inputs, never modifies the caller's tensors, resolves the target (untargeted, given, ``"random"``,
``"least-likely"``), counts the forward and backward passes used, computes success *on the returned image*, and
returns a failed sample as its clean input (never a blank image). Subclasses implement :meth:`Attack.run` only.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..classifier import Classifier
from ..errors import ConfigError
from ..results import Result
from ..seeding import SampleRNG
from .norms import INF, check_eps, lp_norm, norm_name, parse_norm

TargetSpec = Tensor | Sequence[int] | str | None


@dataclass
class Criterion:
    """What counts as adversarial: misclassification (``targets is None``) or reaching ``targets``."""

    labels: Tensor
    targets: Tensor | None = None

    @property
    def targeted(self) -> bool:
        return self.targets is not None

    def is_adversarial(self, logits: Tensor) -> Tensor:
        pred = logits.argmax(1)
        if self.targets is not None:
            return pred == self.targets
        return pred != self.labels

    def margin(self, logits: Tensor) -> Tensor:
        """Per-sample margin, negative exactly when adversarial.

        Untargeted: ``z_y - max_{k != y} z_k``; targeted: ``max_{k != t} z_k - z_t``.
        """
        if self.targets is not None:
            t = self.targets
            zt = logits.gather(1, t[:, None]).squeeze(1)
            other = logits.scatter(1, t[:, None], float("-inf")).amax(1)
            return other - zt
        y = self.labels
        zy = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        return zy - other

    def __getitem__(self, idx: Tensor | slice) -> Criterion:
        return Criterion(self.labels[idx], None if self.targets is None else self.targets[idx])


def resolve_targets(
    target: TargetSpec, clean_logits: Tensor, labels: Tensor, rng: SampleRNG, clf: Classifier
) -> Tensor | None:
    """Turn a target specification into per-sample target labels (or ``None`` for untargeted)."""
    if target is None:
        return None
    c = clean_logits.shape[1]
    if isinstance(target, str):
        if target in ("random", "rand"):
            draw = rng.randint(c - 1, (), key=("target",)).to(labels.device)
            return draw + (draw >= labels).long()  # uniform over the classes other than the label
        if target in ("least-likely", "least_likely", "ll"):
            return clean_logits.argmin(1)
        raise ConfigError(f"unknown target {target!r}; use None, a label tensor, 'random' or 'least-likely'")
    t = clf.validate_labels(target, labels.shape[0], name="targets")
    if bool((t == labels).any()):
        raise ConfigError("some targets equal the true labels; a targeted attack needs a different class")
    return t


@dataclass
class AttackResult(Result):
    """What an attack returns.

    Attributes:
        attack: the attack's name.
        p: the norm order the attack works in (0, 1, 2 or inf).
        clean: the original inputs.
        adversarial: the returned examples; a failed sample is its clean input.
        labels: the labels attacked (true labels, or predictions when none were given).
        targets: the target labels of a targeted attack, else ``None``.
        success: per sample, whether ``adversarial`` meets the criterion (computed on the returned image).
        clean_correct: per sample, whether the clean input is classified as its label.
        norm: per-sample norm of the perturbation in the attack's norm (``inf`` where the attack failed).
        queries: forward and backward passes used, summed over the batch.
        eps: the budget of an eps-bounded attack (``None`` for minimal-norm attacks).
        settings: the attack's configuration.
    """

    attack: str
    p: float
    clean: Tensor
    adversarial: Tensor
    labels: Tensor
    success: Tensor
    clean_correct: Tensor
    norm: Tensor
    queries: dict[str, int] = field(default_factory=dict)
    targets: Tensor | None = None
    eps: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def perturbation(self) -> Tensor:
        return self.adversarial - self.clean

    @property
    def minimal(self) -> bool:
        return self.eps is None

    @property
    def queries_per_sample(self) -> float:
        n = max(1, self.clean.shape[0])
        return (self.queries.get("forward", 0) + self.queries.get("backward", 0)) / n

    def norms(self, p: float | str) -> Tensor:
        """Per-sample perturbation norm in any Lp norm (``inf`` for failed samples)."""
        n = lp_norm(self.perturbation, parse_norm(p))
        return torch.where(self.success, n, torch.full_like(n, INF))

    def robust_accuracy(self, eps: float | Sequence[float] | None = None) -> Tensor:
        """Robust accuracy (paper eq. 12) at each eps: clean-correct samples not fooled within eps.

        A minimal-norm result answers any eps list from one run (a sample is robust at eps if its minimal
        perturbation is larger than eps). An eps-bounded result answers its own eps only.
        """
        if self.eps is not None:
            if eps is not None and any(abs(float(e) - self.eps) > 1e-12 for e in _as_list(eps)):
                raise ConfigError(
                    f"this result comes from an attack bounded at eps={self.eps}; run a minimal-norm attack "
                    "to get robust accuracy at other eps"
                )
            return (self.clean_correct & ~self.success).float().mean().reshape(1)
        if eps is None:
            raise ConfigError("give the eps values at which to evaluate robust accuracy")
        eps_t = torch.as_tensor(_as_list(eps), dtype=self.norm.dtype)
        n = self.norm.cpu()
        fooled = self.success.cpu()[None, :] & (n[None, :] <= eps_t[:, None] + 1e-12)
        return (self.clean_correct.cpu()[None, :] & ~fooled).float().mean(1)


def _as_list(eps: float | Sequence[float]) -> list[float]:
    return [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]


class Attack(ABC):
    """Base class of all attacks. Subclasses set ``name`` and implement :meth:`run`.

    Args (common to all attacks):
        norm: the Lp norm the attack works in.
        clip: keep examples inside the classifier's bounds (paper footnote 1). Default ``True``.
    """

    name: ClassVar[str] = "attack"
    gradient_free: ClassVar[bool] = False

    def __init__(self, norm: float | str = 2, *, clip: bool = True) -> None:
        self.p = parse_norm(norm)
        self.clip = clip

    @property
    def settings(self) -> dict[str, Any]:
        """The attack's configuration (public attributes), recorded in its result."""
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if k.startswith("_"):
                continue
            if isinstance(v, float) and math.isinf(v):
                v = "inf"
            if isinstance(v, (int, float, str, bool, type(None))):
                out[k] = v
            elif isinstance(v, (list, tuple)) and all(isinstance(i, (int, float, str)) for i in v):
                out[k] = list(v)
            else:
                out[k] = type(v).__name__
        return out

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"

    def _eps(self) -> float | None:
        return None

    def __call__(
        self,
        clf: Classifier,
        x: Tensor,
        y: Tensor | Sequence[int] | None = None,
        *,
        target: TargetSpec = None,
        seed: int = 0,
        indices: Tensor | Sequence[int] | None = None,
    ) -> AttackResult:
        """Attack a batch.

        Args:
            clf: the classifier.
            x: inputs in the data range, shape ``(N, *input_shape)``. Never modified.
            y: true labels; the model's predictions are attacked when omitted.
            target: ``None`` (untargeted), target labels, ``"random"`` or ``"least-likely"``.
            seed: seed of every random choice (random starts, random targets, Square's proposals).
            indices: dataset index of each sample, so that random draws do not depend on batching.
        """
        x, y_checked = clf.validate(x, None if y is None else torch.as_tensor(y))
        x = x.detach().clone()
        rng = SampleRNG(seed, indices, n=x.shape[0])
        start = clf.counter.snapshot()
        with clf.analysis_mode():
            with torch.no_grad():
                clean_logits = clf.forward(x)
            labels = clean_logits.argmax(1) if y_checked is None else y_checked
            targets = resolve_targets(target, clean_logits, labels, rng, clf)
            criterion = Criterion(labels, targets)
            adv = self.run(clf, x, criterion, rng).detach()
            if self.clip:
                adv = clf.clip(adv)
            with torch.no_grad():
                final_logits = clf.forward(adv)
        success = criterion.is_adversarial(final_logits)
        adv = torch.where(success.view(-1, *([1] * (x.ndim - 1))), adv, x)
        # a failed sample is returned as its clean input: if that already meets the criterion (misclassified), the
        # returned image is adversarial at distance 0, and success says so
        success = success | criterion.is_adversarial(clean_logits)
        norm = lp_norm(adv - x, self.p)
        norm = torch.where(success, norm, torch.full_like(norm, INF))
        fwd, bwd = clf.counter.snapshot()
        return AttackResult(
            attack=self.name,
            p=self.p,
            clean=x,
            adversarial=adv,
            labels=labels,
            targets=targets,
            success=success,
            clean_correct=clean_logits.argmax(1) == labels,
            norm=norm,
            queries={"forward": fwd - start[0], "backward": bwd - start[1]},
            eps=self._eps(),
            settings={"norm": norm_name(self.p), **self.settings},
        )

    @abstractmethod
    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        """Return candidate adversarial examples for the batch ``x`` (already validated and cloned).

        Called inside ``clf.analysis_mode()``. Use ``clf.forward`` and ``clf.value_and_grad`` so passes are
        counted; stop spending compute on samples that are done.
        """


class MinimalNormAttack(Attack):
    """Attacks that search the smallest perturbation that changes the decision (eq. 8-9)."""


class BoundedAttack(Attack):
    """Attacks that maximise a loss inside an Lp ball of radius ``eps`` (eq. 10-11)."""

    def __init__(self, norm: float | str = INF, eps: float = 8 / 255, *, clip: bool = True) -> None:
        super().__init__(norm, clip=clip)
        self.eps = check_eps(eps)

    def _eps(self) -> float | None:
        return self.eps


__all__ = [
    "Attack",
    "AttackResult",
    "BoundedAttack",
    "Criterion",
    "MinimalNormAttack",
    "TargetSpec",
    "resolve_targets",
]

