"""The attack core: the ``Attack`` protocol with its one final call, the registry and the typed ``AttackResult``.

Two families (Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding
and Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021, Sec. II-B):

- :class:`MinimalNormAttack` solves eq. (8)-(9): the smallest Lp perturbation that changes the decision.
  Its result answers robust accuracy at every eps from one run (:meth:`AttackResult.robust_accuracy`).
- :class:`BoundedAttack` solves eq. (10)-(11): the worst loss within an Lp ball of radius eps.

Every attack is configured once and called on a batch, ``res = DeepFool(norm=2)(clf, x, y)``. The call is the
same for every attack and cannot be overridden (Foolbox 3's safety net): it validates the inputs (never modifying
the caller's tensors), refuses non-finite clean logits (or marks those samples ``invalid`` on request), resolves
the target (untargeted, given, ``"random"``, ``"least-likely"``), runs the attack in chunks of
``clf.batch_size`` samples (memory bounded whatever N; per-sample random streams keep the result identical for
any chunk size), clips to the bounds and hands every candidate to :func:`robustlens.decision.decide`, which alone
says whether it fools: finite, inside the bounds and the eps-ball, misclassified by finite logits recomputed on the
returned point. A failed sample is returned as its clean input (never a blank image). Subclasses implement
:meth:`Attack.run` only, and register with ``@ATTACKS.register(...)`` beside their definition.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, final

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..checks import NON_NEGATIVE, OPTIONAL_COUNT, Number, check, checked
from ..classifier import Classifier
from ..decision import Criterion, clean_validity, decide, warn_rejected
from ..errors import ConfigError, InputError
from ..norms import INF, lp_norm, norm_name, parse_norm
from ..registry import Registry
from ..results import Result
from ..seeding import SampleRNG

TargetSpec = Tensor | Sequence[int] | str | None

ATTACKS: Registry[type[Attack]] = Registry("attack")
"""Every attack class by name. Metadata: ``minimal`` (eq. 8-9, else eps-bounded), ``norms`` (the norms it supports),
``steps`` (the constructor argument that sets its main iteration count, or ``None``), ``defaults`` (constructor
arguments the name implies, e.g. ``apgd-dlr``: ``loss="dlr"``), ``summary``."""


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
        success: per sample, whether ``adversarial`` meets the criterion (decided on the returned image by
            :func:`robustlens.decision.decide`).
        clean_correct: per sample, whether the clean input is classified as its label.
        norm: per-sample norm of the perturbation in the attack's norm (``inf`` where the attack failed).
        queries: forward and backward passes used, summed over the batch.
        eps: the budget of an eps-bounded attack (``None`` for minimal-norm attacks).
        settings: the attack's configuration.
        stopped: per sample, the attack stopped on a NaN or Inf gradient or logit: its robustness is unknown and
            :meth:`robust_accuracy` refuses to count it (``None``: no sample stopped).
        invalid: per sample, the clean logits were not finite (with ``invalid="mark"``): never correct, never
            fooled (``None``: all valid).
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
    stopped: Tensor | None = None
    invalid: Tensor | None = None

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

    @property
    def fooled(self) -> Tensor:
        """Per sample, correctly classified and fooled: what an attack achieved (``success`` also counts the
        samples the model already gets wrong, whose clean input is returned as their adversarial example)."""
        return self.success & self.clean_correct

    def counts(self) -> dict[str, int]:
        """``samples``, ``correct`` (clean-correct), ``fooled`` (of those) and ``stopped`` (on a NaN gradient)."""
        stopped = 0 if self.stopped is None else int(self.stopped.sum())
        return {"samples": int(self.clean.shape[0]), "correct": int(self.clean_correct.sum()),
                "fooled": int(self.fooled.sum()), "stopped": stopped}

    def median_norm(self) -> float:
        """Median perturbation norm (in the attack's norm) of the correctly classified samples fooled (eq. 13);
        ``nan`` when none was fooled."""
        n = self.norm[self.fooled.to(self.norm.device)]
        return float(n.double().median()) if n.numel() else float("nan")

    def summary(self) -> str:
        """A few lines for a person: the counts, the clean and robust accuracy, the median norm, eps and passes.

        Example::

            >>> print(res.summary())   # doctest: +SKIP
            pgd (Linf, eps 0.3) on 100 samples: fooled 71 of 98 correctly classified (clean accuracy 0.980)
            robust accuracy 0.270; median Linf norm of the fooled 0.3; 41.0 passes per sample
        """
        c = self.counts()
        budget = f", eps {self.eps:g}" if self.eps is not None else ", minimal norm"
        clean = c["correct"] / max(1, c["samples"])
        lines = [f"{self.attack} ({norm_name(self.p)}{budget}) on {c['samples']} samples: fooled {c['fooled']} of "
                 f"{c['correct']} correctly classified (clean accuracy {clean:.3f})"]
        med = self.median_norm()
        parts = []
        if self.eps is not None:
            parts.append(f"robust accuracy {(c['correct'] - c['fooled']) / max(1, c['samples']):.3f}")
        parts.append(f"median {norm_name(self.p)} norm of the fooled " + ("n/a" if math.isnan(med) else f"{med:.4g}"))
        parts.append(f"{self.queries_per_sample:.1f} passes per sample")
        if c["stopped"]:
            parts.append(f"{c['stopped']} stopped on a non-finite gradient")
        lines.append("; ".join(parts))
        return "\n".join(lines)

    def norms(self, p: float | str) -> Tensor:
        """Per-sample perturbation norm in any Lp norm (``inf`` for failed samples)."""
        n = lp_norm(self.perturbation, parse_norm(p))
        return torch.where(self.success, n, torch.full_like(n, INF))

    def robust_accuracy(self, eps: float | Sequence[float] | None = None) -> Tensor:
        """Robust accuracy (paper eq. 12) at each eps: clean-correct samples not fooled within eps.

        A minimal-norm result answers any eps list from one run (a sample is robust at eps if its minimal
        perturbation is larger than eps). An eps-bounded result answers its own eps only. Raises
        :class:`InputError` when a correctly classified sample that was not fooled stopped on a non-finite gradient
        (its robustness is unknown: counting it robust would overstate robustness).
        """
        check_undecided(self.stopped, self.clean_correct, self.success, self.attack)
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


def check_undecided(stopped: Tensor | None, clean_correct: Tensor, success: Tensor, attack: str = "",
                    indices: Tensor | None = None) -> None:
    """Refuse a robust accuracy that would count as robust a correctly classified sample whose attack stopped on a
    NaN or Inf gradient or logit (:class:`InputError` naming the samples, by dataset ``indices`` when given, and
    what to do)."""
    if stopped is None:
        return
    bad = (torch.as_tensor(stopped).bool().cpu() & torch.as_tensor(clean_correct).bool().cpu()
           & ~torch.as_tensor(success).bool().cpu())
    if bool(bad.any()):
        idx = bad.nonzero().flatten()
        what = "rows"
        if indices is not None:
            idx, what = torch.as_tensor(indices).cpu()[idx], "dataset indices"
        first = ", ".join(str(int(i)) for i in idx[:5]) + (", ..." if idx.numel() > 5 else "")
        raise InputError(
            f"robust accuracy is unknown: {attack or 'the attack'} stopped on {idx.numel()} correctly classified "
            f"sample(s) ({what} {first}) because the model's input gradient or logits were NaN or Inf on the attack's "
            "path (a non-differentiable operation such as sqrt or log at 0, an overflow, or gradient masking); "
            "counting them robust would overstate robustness. Fix the model (e.g. sqrt(x + 1e-12)), drop those "
            "samples, or use a gradient-free attack such as Square"
        )


def _as_list(eps: float | Sequence[float]) -> list[float]:
    return [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]


class Attack(ABC):
    """Base class of all attacks. Subclasses set ``name``, implement :meth:`run` and never override the call.

    Args (common to all attacks):
        norm: the Lp norm the attack works in.
        clip: keep examples inside the classifier's bounds (paper footnote 1). Default ``True``.
    """

    name: ClassVar[str] = "attack"
    gradient_free: ClassVar[bool] = False
    targeted_ok: ClassVar[bool] = True
    """Whether the attack takes a ``target`` (AutoAttack's stages choose their own)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Attack.__call__; implement run() instead: the call decides "
                            "success for every attack")

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

    @final
    def __call__(
        self,
        clf: Classifier,
        x: Tensor,
        y: Tensor | Sequence[int] | None = None,
        *,
        target: TargetSpec = None,
        seed: int = 0,
        indices: Tensor | Sequence[int] | None = None,
        batch_size: int | None = None,
        invalid: str = "raise",
        progress: bool | None = None,
    ) -> AttackResult:
        """Attack a batch.

        Args:
            clf: the classifier.
            x: inputs in the data range, shape ``(N, *input_shape)``. Never modified.
            y: true labels; the model's predictions are attacked when omitted.
            target: ``None`` (untargeted), target labels, ``"random"`` or ``"least-likely"``.
            seed: seed of every random choice (random starts, random targets, Square's proposals, and the
                randomness of a stochastic classifier).
            indices: dataset index of each sample, so that random draws do not depend on batching.
            batch_size: samples attacked together (default ``clf.batch_size``); memory grows with it, not with N.
                The result does not depend on it.
            invalid: ``"raise"`` (default): non-finite clean logits are an :class:`InputError`; ``"mark"``: those
                samples are skipped and marked in ``result.invalid`` (never correct, never fooled).
            progress: a tqdm bar over the samples, chunk by chunk; ``None`` (default): when there is more than one
                chunk and stderr is a terminal.
        """
        batch_size = check(batch_size, "batch_size", OPTIONAL_COUNT, type(self).__name__)
        seed = check(seed, "seed", Number(integer=True), type(self).__name__)
        if target is not None and not self.targeted_ok:
            raise ConfigError(f"{type(self).__name__} is untargeted (it chooses its own targets); call it with "
                              "target=None")
        x, y_checked = clf.validate(x, None if y is None else torch.as_tensor(y))
        x = x.detach().clone()
        n = x.shape[0]
        if isinstance(target, (Tensor, list, tuple)):
            target = clf.validate_labels(target, n, name="targets")
        rng = SampleRNG(seed, indices, n=n)
        if len(rng) != n:
            raise InputError(f"got {len(rng)} indices for {n} inputs; pass one dataset index per input")
        state = self._state = self._new_call_state()
        start = clf.counter.snapshot()
        parts: list[dict[str, Tensor | None]] = []
        chunks = list(clf.chunks(n, batch_size))
        show = len(chunks) > 1 if progress is None else bool(progress)
        bar = tqdm(total=n, desc=self.name, unit="sample", leave=False, disable=None if show else True)
        try:
            with clf.analysis_mode(), clf.random_state(seed):
                for s in chunks:
                    sel = torch.arange(s.start, s.stop)
                    ys = None if y_checked is None else y_checked[s]
                    ts = target[s] if isinstance(target, Tensor) else target
                    parts.append(self._attack_chunk(clf, x[s], ys, ts, rng.subset(sel), invalid))
                    bar.update(s.stop - s.start)
        finally:
            self._state = None
            bar.close()
        fwd, bwd = clf.counter.snapshot()
        out = {k: (None if parts[0][k] is None else torch.cat([p[k] for p in parts])) for k in parts[0]}  # type: ignore
        kinds = out.pop("_warn")
        assert kinds is not None
        warn_rejected(type(self).__name__, kinds[:, 0], kinds[:, 1], kinds[:, 2], stacklevel=3)
        stopped, invalid_mask = out.pop("stopped"), out.pop("invalid")
        assert out["success"] is not None and stopped is not None and invalid_mask is not None
        fields: dict[str, Any] = dict(
            attack=self.name,
            p=self.p,
            clean=x,
            **out,
            queries={"forward": fwd - start[0], "backward": bwd - start[1]},
            eps=self._eps(),
            settings={"norm": norm_name(self.p), **self.settings},
            stopped=stopped if bool(stopped.any()) else None,
            invalid=invalid_mask if bool(invalid_mask.any()) else None,
        )
        return self._make_result(fields, state)

    def _attack_chunk(self, clf: Classifier, x: Tensor, y: Tensor | None, target: TargetSpec, rng: SampleRNG,
                      invalid: str) -> dict[str, Tensor | None]:
        clean_logits = clf.decision_logits(x)
        valid = clean_validity(clean_logits, invalid, type(self).__name__)
        labels = clean_logits.nan_to_num(0.0).argmax(1) if y is None else y
        targets = resolve_targets(target, clean_logits.nan_to_num(0.0), labels, rng, clf)
        criterion = Criterion(labels, targets)
        if bool(valid.all()):
            cand = self.run(clf, x, criterion, rng).detach()
        else:
            cand = x.clone()
            todo = valid.nonzero().flatten()
            if todo.numel():
                cand[todo] = self.run(clf, x[todo], criterion[todo], rng.subset(todo.cpu())).detach()
        if cand.shape != x.shape:
            raise RuntimeError(f"{self.name}.run returned shape {tuple(cand.shape)} for inputs {tuple(x.shape)}")
        if self.clip:
            cand = clf.clip(cand)
        d = decide(clf, x, cand, criterion, p=self.p, eps=self._eps(), bounds=self.clip, clean_logits=clean_logits)
        kinds = torch.stack([d.stopped, d.nonfinite_logits, d.outside], 1)
        return {
            "adversarial": d.adversarial,
            "labels": labels,
            "targets": targets,
            "success": d.success,
            "clean_correct": valid & (clean_logits.nan_to_num(0.0).argmax(1) == labels),
            "norm": d.norm,
            "stopped": d.stopped,
            "invalid": d.invalid,
            "_warn": kinds,
        }

    _state: Any = None
    """During a call, what :meth:`_new_call_state` returned (AutoAttack's :meth:`run` adds its per-stage counts)."""

    def _new_call_state(self) -> Any:
        """Per-call state, available to :meth:`run` as ``self._state`` and handed to :meth:`_make_result`."""
        return None

    def _make_result(self, fields: dict[str, Any], state: Any) -> AttackResult:
        return AttackResult(**fields)

    @abstractmethod
    def run(self, clf: Classifier, x: Tensor, criterion: Criterion, rng: SampleRNG) -> Tensor:
        """Return candidate adversarial examples for the batch ``x`` (already validated and cloned).

        Called inside ``clf.analysis_mode()``. Use ``clf.forward``, ``clf.value_and_grad`` and
        ``clf.logit_jacobian`` so passes are counted; stop spending compute on samples that are done. A sample whose
        gradient is not finite is returned as NaN (:func:`robustlens.decision.stop`) unless an adversarial point
        was already found for it. The candidates are judged by :func:`robustlens.decision.decide`.
        """


class MinimalNormAttack(Attack):
    """Attacks that search the smallest perturbation that changes the decision (eq. 8-9)."""


class BoundedAttack(Attack):
    """Attacks that maximise a loss inside an Lp ball of radius ``eps`` (eq. 10-11)."""

    @checked(eps=NON_NEGATIVE)
    def __init__(self, norm: float | str = INF, eps: float = 8 / 255, *, clip: bool = True) -> None:
        super().__init__(norm, clip=clip)
        self.eps = float(eps)

    def _eps(self) -> float | None:
        return self.eps


__all__ = [
    "ATTACKS",
    "Attack",
    "AttackResult",
    "BoundedAttack",
    "Criterion",
    "MinimalNormAttack",
    "TargetSpec",
    "check_undecided",
    "resolve_targets",
]
