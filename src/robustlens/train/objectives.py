"""Training objectives plugged into the one loop (:func:`robustlens.train.fit`).

Each objective is a small class with ``name`` and ``loss(model, x, y, *, step_ctx) -> (loss, stats)``. Objectives that
train on perturbed inputs also expose ``perturb(model, x, y, step_ctx) -> x'`` so the inner problem can be inspected
and tested on its own. Adversarial examples come from :mod:`robustlens.attacks` (the attack's ``run`` on the
trainer's :class:`~robustlens.classifier.Classifier`, which is built with ``eval_mode=False`` when the trainer attacks
in train mode); the regularisers (GradAlign, CURE) differentiate input gradients with ``create_graph=True``.

Per-sample input gradients are taken of the *summed* per-sample losses, so each sample's input gradient is the
gradient of its own loss and does not shrink with the batch size.

References: paper eq. (14) (adversarial training), Sec. III-B2 (catastrophic overfitting), III-B3 (regularisation),
IV-C4 eq. (22)-(23) (ACET).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.base import Attack, Criterion
from ..checks import (
    COUNT,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    OPTIONAL_COUNT,
    POSITIVE,
    PROBABILITY,
    Number,
    check,
    checked,
    declared_checks,
)
from ..errors import ConfigError
from ..norms import INF, check_eps, norm_name, parse_norm
from ..ops import per_sample
from ..registry import Registry
from .contracts import Objective, StepContext

#: Every training objective by name (``robustlens train --objective``), registered beside its class. Metadata:
#: ``radius``, the constructor parameter that ``eps`` sets (``"eps"``, ``"sigma"``, ``"eta"`` or ``None``), and
#: ``summary``, one line for the command line's help.
OBJECTIVES: Registry[type] = Registry("objective")

#: A step size or radius that is positive when given (``None``: the objective's default).
OPTIONAL_POSITIVE = Number(low=0, low_open=True, optional=True)


def _accuracy(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.detach().argmax(1) == y).float().mean()


def input_grad(model: Callable[[Tensor], Tensor], x: Tensor, fn: Any, *, create_graph: bool) -> tuple[Tensor, Tensor]:
    """``(per-sample values fn(model(x)), d sum(values) / dx)``; with ``create_graph`` the gradient is differentiable
    with respect to the weights (double back-propagation, used by GradAlign and CURE)."""
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        values = fn(model(x))
        (g,) = torch.autograd.grad(values.sum(), x, create_graph=create_graph)
    return values, g


class _LastIterate(Criterion):
    """A criterion under which no iterate counts as adversarial, so the shared iterative loop runs every step on
    every sample and returns the *last* iterate: the inner maximisation of adversarial training (Madry et al.;
    Wong et al.), not the first adversarial point that an evaluation attack stops at."""

    def is_adversarial(self, logits: Tensor) -> Tensor:
        return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)

    def __getitem__(self, idx: Tensor | slice) -> Criterion:
        return _LastIterate(self.labels[idx], None if self.targets is None else self.targets[idx])


def run_attack(
    attack: Attack, x: Tensor, y: Tensor, ctx: StepContext, key: str, *, last_iterate: bool = True
) -> Tensor:
    """Adversarial examples for a training batch from a :mod:`robustlens.attacks` attack.

    Calls ``attack.run`` (the attack's perturbation path, without the extra clean and final forward passes of
    ``attack(...)``) on the trainer's Classifier; random starts draw from per-sample streams keyed by
    ``(seed, key, epoch, dataset index)``. With ``last_iterate`` (eps-bounded attacks) the attack's last iterate is
    returned for every sample (see :class:`_LastIterate`); otherwise the attack's own criterion (misclassification)
    decides. The result is clipped to the bounds and detached.
    """
    clf = ctx.clf
    crit: Criterion = _LastIterate(y) if last_iterate else Criterion(y)
    with clf.analysis_mode():
        adv = attack.run(clf, x.detach(), crit, ctx.sample_rng(key))
    return clf.clip(adv.detach()) if attack.clip else adv.detach()


# ---------------------------------------------------------------------------------------------------- standard
@OBJECTIVES.register("standard", radius=None, summary="cross-entropy on clean inputs (eq. 1)")
class Standard:
    """Empirical risk minimisation with cross-entropy (paper eq. (1)-(2))."""

    name = "standard"

    def config(self) -> dict[str, Any]:
        return {}

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, *, step_ctx: StepContext) -> tuple[Tensor, dict[str, Any]]:
        logits = model(x)
        return F.cross_entropy(logits, y), {"accuracy": _accuracy(logits, y)}


class _OnPerturbed(ABC):
    """Cross-entropy on ``perturb(x)``: the shared body of the adversarial-training objectives (eq. 14)."""

    name = "perturbed"

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            if not k.startswith("_") and isinstance(v, (int, float, str, bool, type(None))):
                out[k] = norm_name(float(v)) if k == "p" and isinstance(v, (int, float)) else v
        return out

    @abstractmethod
    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext) -> Tensor:
        """The perturbed inputs the cross-entropy is taken on."""

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, *, step_ctx: StepContext) -> tuple[Tensor, dict[str, Any]]:
        adv = self.perturb(model, x, y, step_ctx)
        logits = model(adv)
        return F.cross_entropy(logits, y), {"accuracy": _accuracy(logits, y)}


def _pgd(norm: float, eps: float, steps: int, step_size: float, random_start: bool, loss: Any = "ce") -> Attack:
    from ..attacks.pgd import PGD

    # at eps = 0 the default step size is 0: the attack's own default (the same 2.5 eps / steps) accepts it
    return PGD(norm=norm, eps=eps, steps=steps, alpha=step_size or None, random_start=random_start, loss=loss)


@OBJECTIVES.register("pgd", radius="eps", summary="PGD adversarial training (Madry et al.)")
class PGDAT(_OnPerturbed):
    """PGD adversarial training (Madry et al., ICLR 2018; paper eq. (14)).

    Minimises ``E max_{||r||_p <= eps} CE(x + r, y)``, the inner maximum approximated by ``steps`` steps of projected
    gradient ascent of size ``step_size`` from a random start in the ball (the attacks package's ``PGD``).

    Args:
        eps: radius of the ball.
        norm: ``"inf"`` (default), ``2`` or ``1``.
        steps: PGD iterations (Madry et al. use 40 on MNIST, 7 on CIFAR-10).
        step_size: default ``2.5 * eps / steps``.
        random_start: start from a uniform point of the ball.

    Example:
        >>> fit(model, (x, y), objective=PGDAT(eps=0.3, steps=10), epochs=3, eps_warmup=1)
    """

    name = "pgd"

    @checked(eps=NON_NEGATIVE, steps=COUNT, step_size=OPTIONAL_POSITIVE)
    def __init__(self, eps: float, *, norm: float | str = INF, steps: int = 10, step_size: float | None = None,
                 random_start: bool = True) -> None:
        self.eps = check_eps(eps)
        self.p = parse_norm(norm)
        self.steps = int(steps)
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / self.steps
        self.random_start = random_start
        self._attack = _pgd(self.p, self.eps, self.steps, self.step_size, random_start)

    def at_radius(self, eps: float) -> PGDAT:
        """The same objective at radius ``eps``, its step size scaled with it (the eps warm-up)."""
        return PGDAT(eps, norm=self.p, steps=self.steps, step_size=self.step_size * eps / self.eps,
                     random_start=self.random_start)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext) -> Tensor:
        return run_attack(self._attack, x, y, step_ctx, self.name)


@OBJECTIVES.register("fgsm", radius="eps", summary="FGSM adversarial training (Goodfellow et al.)")
class FGSMAT(_OnPerturbed):
    """FGSM adversarial training (Goodfellow et al., ICLR 2015): one signed-gradient step of size ``eps`` from the
    clean input, ``x + eps sign(grad_x CE)``; prone to catastrophic overfitting at large eps (paper Sec. III-B2)."""

    name = "fgsm"

    @checked(eps=NON_NEGATIVE)
    def __init__(self, eps: float, *, norm: float | str = INF) -> None:
        self.eps = check_eps(eps)
        self.p = parse_norm(norm)
        from ..attacks.fgsm import FGSM

        self._attack = FGSM(norm=self.p, eps=self.eps)

    def at_radius(self, eps: float) -> FGSMAT:
        """The same objective at radius ``eps`` (the eps warm-up)."""
        return FGSMAT(eps, norm=self.p)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext) -> Tensor:
        return run_attack(self._attack, x, y, step_ctx, self.name)


@OBJECTIVES.register("fgsm-rs", radius="eps",
                      summary="FGSM from a random start, fast AT (Wong et al.)")
class FGSMRS(_OnPerturbed):
    """"Fast" adversarial training, FGSM with a random start (Wong, Rice and Kolter, ICLR 2020).

    A uniform start in the eps-ball, then one signed-gradient step of size ``alpha`` (default ``1.25 eps``), projected
    back onto the ball: one PGD step from a random start. Costs about two standard steps (one extra forward and
    backward pass).
    """

    name = "fgsm-rs"

    @checked(eps=NON_NEGATIVE, alpha=OPTIONAL_POSITIVE)
    def __init__(self, eps: float, *, alpha: float | None = None, norm: float | str = INF) -> None:
        self.eps = check_eps(eps)
        self.p = parse_norm(norm)
        self.alpha = float(alpha) if alpha is not None else 1.25 * self.eps
        self._attack = _pgd(self.p, self.eps, 1, self.alpha, True)

    def at_radius(self, eps: float) -> FGSMRS:
        """The same objective at radius ``eps``, its step scaled with it (the eps warm-up)."""
        return FGSMRS(eps, alpha=self.alpha * eps / self.eps, norm=self.p)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext) -> Tensor:
        return run_attack(self._attack, x, y, step_ctx, self.name)


@OBJECTIVES.register("gradalign", radius="eps",
                      summary="FGSM with the gradient-alignment regulariser (Andriushchenko and Flammarion)")
class GradAlign(_OnPerturbed):
    """FGSM training with the gradient-alignment regulariser (Andriushchenko and Flammarion, NeurIPS 2020).

    ``CE(x_fgsm, y) + lam * E[1 - cos(grad_x CE(x, y), grad_x CE(x + eta, y))]`` with ``eta`` uniform in the
    Linf eps-ball. Both input gradients are differentiated (double back-propagation); keeping them aligned keeps the
    loss locally linear, which prevents catastrophic overfitting (paper Sec. III-B2).

    The FGSM step reuses one of the regulariser's gradients, so a step costs three forward passes (clean, noisy
    point, FGSM point), not four: with a zero start (the authors' main setting) it steps ``alpha`` from ``x`` along
    the clean gradient; with ``random_start`` it steps ``alpha`` from the uniform point ``x + eta`` along the
    gradient there (the FGSM-RS step of Wong et al., which the authors' code also offers), projected onto the ball.
    When the attack sees the model in eval mode (``attack_mode="eval"``) the step's gradient is taken in eval mode
    with a pass of its own.

    Args:
        eps: radius.
        lam: regularisation weight (Andriushchenko and Flammarion use 0.2 at eps = 8/255 on CIFAR-10 and scale
            it with eps). On MNIST at eps = 0.3 a larger weight trains a less robust model; our best runs used
            ``random_start=True`` with lam 0.03 (docs/training.md, "Equal schedules").
        detach_clean: hold the clean gradient constant and differentiate only the one at the noisy point, as the
            authors' code does: one double back-propagation instead of two (a different weight gradient; off by
            default).
        random_start: take the FGSM step from the regulariser's uniform point instead of the clean input.
        alpha: FGSM step size (default ``eps`` from a zero start, ``1.25 eps`` from a random start).
        clip_noise: clip the uniform point to the classifier's bounds (default). ``False`` takes the second gradient
            at ``x + eta`` even where it leaves the bounds, as the authors' code does; the FGSM point is clipped
            either way.
    """

    name = "gradalign"

    @checked(eps=NON_NEGATIVE, lam=NON_NEGATIVE, alpha=OPTIONAL_POSITIVE)
    def __init__(self, eps: float, *, lam: float = 0.2, norm: float | str = INF, detach_clean: bool = False,
                 random_start: bool = False, alpha: float | None = None, clip_noise: bool = True) -> None:
        self.eps = check_eps(eps)
        self.lam = float(lam)
        self.clip_noise = bool(clip_noise)
        self.p = parse_norm(norm)
        self.detach_clean = bool(detach_clean)
        self.random_start = bool(random_start)
        self.alpha = float(alpha) if alpha is not None else (1.25 if self.random_start else 1.0) * self.eps
        if self.p != INF:
            raise ConfigError("GradAlign is implemented for the Linf norm (the uniform noise is drawn in the cube)")
        from ..attacks.fgsm import FGSM

        self._attack = FGSM(norm=self.p, eps=self.eps)

    def at_radius(self, eps: float) -> GradAlign:
        """The same objective at radius ``eps``, its FGSM step scaled with it (the eps warm-up)."""
        return GradAlign(eps, lam=self.lam, norm=self.p, detach_clean=self.detach_clean,
                         random_start=self.random_start, alpha=self.alpha * eps / self.eps, clip_noise=self.clip_noise)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext) -> Tensor:
        clf = step_ctx.clf
        start = self.noise(x, step_ctx) if self.random_start else x.detach()
        with clf.analysis_mode():
            _, g = input_grad(clf.forward, start, self._ce(y), create_graph=False)
        return self._attack.from_gradient(clf, x, g, start=start, alpha=self.alpha)

    def noise(self, x: Tensor, step_ctx: StepContext) -> Tensor:
        """The uniform point of the eps-cube where the second gradient is taken (clipped to the bounds unless
        ``clip_noise`` is off)."""
        u = torch.rand(x.shape, generator=step_ctx.generator(self.name), device=x.device, dtype=x.dtype)
        point = x + (2 * u - 1) * self.eps
        return step_ctx.clf.clip(point) if self.clip_noise else point

    @staticmethod
    def _ce(y: Tensor) -> Any:
        def ce(z: Tensor) -> Tensor:
            return F.cross_entropy(z, y, reduction="none")

        return ce

    def regulariser(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext,
                    g1: Tensor | None = None, g2: Tensor | None = None) -> Tensor:
        """Per-sample ``1 - cos(grad_x CE(x), grad_x CE(x + eta))``, differentiable in the weights (the clean gradient
        only without ``detach_clean``); ``g1``, ``g2``: the clean and noisy gradients when already computed."""
        if g1 is None:
            _, g1 = input_grad(model, x, self._ce(y), create_graph=not self.detach_clean)
        if self.detach_clean:
            g1 = g1.detach()
        if g2 is None:
            _, g2 = input_grad(model, self.noise(x, step_ctx), self._ce(y), create_graph=True)
        return 1.0 - F.cosine_similarity(g1.flatten(1), g2.flatten(1), dim=1, eps=1e-12)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, *, step_ctx: StepContext) -> tuple[Tensor, dict[str, Any]]:
        g1 = g2 = None
        clf = step_ctx.clf
        if clf.eval_mode:
            # the attack sees the model in eval mode, the regulariser in train mode: two different gradients
            adv = self.perturb(model, x, y, step_ctx)
        elif self.random_start:
            # FGSM-RS's gradient at the uniform point is the regulariser's noisy gradient: take it once
            start = self.noise(x, step_ctx)
            _, g2 = input_grad(model, start, self._ce(y), create_graph=True)
            adv = self._attack.from_gradient(clf, x, g2, start=start, alpha=self.alpha)
        else:
            # FGSM's gradient is the regulariser's clean gradient (same model, mode and input): take it once
            _, g1 = input_grad(model, x, self._ce(y), create_graph=not self.detach_clean)
            adv = self._attack.from_gradient(clf, x, g1, alpha=self.alpha)
        logits = model(adv)
        ce = F.cross_entropy(logits, y)
        reg = self.regulariser(model, x, y, step_ctx, g1=g1, g2=g2).mean()
        return ce + self.lam * reg, {"accuracy": _accuracy(logits, y), "ce": ce.detach(),
                                     "grad_cosine": 1.0 - reg.detach()}


@OBJECTIVES.register("trades", radius="eps", summary="TRADES, clean loss + beta KL (Zhang et al.)")
class TRADES:
    """TRADES (Zhang et al., ICML 2019): ``CE(f(x), y) + beta * KL(p(x) || p(x'))`` with ``x'`` maximising the KL
    divergence inside the eps-ball.

    The inner maximisation runs the attacks package's ``PGD`` on the loss ``KL(p(x) || p(.))`` (clean
    probabilities held fixed), ``steps`` steps, last iterate. The reference implementation starts from
    ``x + 0.001 N(0, 1)``; we start from a uniform point of the ball (the PGD random start), which also avoids the
    zero gradient of the KL at ``x' = x``.
    """

    name = "trades"

    @checked(eps=NON_NEGATIVE, beta=NON_NEGATIVE, steps=COUNT, step_size=OPTIONAL_POSITIVE)
    def __init__(self, eps: float, *, beta: float = 6.0, steps: int = 10, step_size: float | None = None,
                 norm: float | str = INF) -> None:
        self.eps = check_eps(eps)
        self.beta = float(beta)
        self.steps = int(steps)
        self.p = parse_norm(norm)
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / self.steps

    def config(self) -> dict[str, Any]:
        return {"eps": self.eps, "beta": self.beta, "steps": self.steps, "step_size": self.step_size,
                "norm": norm_name(self.p)}

    def at_radius(self, eps: float) -> TRADES:
        """The same objective at radius ``eps``, its step size scaled with it (the eps warm-up)."""
        return TRADES(eps, beta=self.beta, steps=self.steps, step_size=self.step_size * eps / self.eps, norm=self.p)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext,
                clean_logits: Tensor | None = None) -> Tensor:
        """The KL-maximising point; ``clean_logits``: the model's logits on ``x`` when already computed (in the
        attack's mode)."""
        clf = step_ctx.clf
        if clean_logits is None:
            with torch.no_grad(), clf.analysis_mode():
                clean_logits = clf.forward(x)
        log_p_clean = F.log_softmax(clean_logits.detach(), dim=1)

        def kl(logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
            return (log_p_clean.exp() * (log_p_clean - F.log_softmax(logits, dim=1))).sum(1)

        attack = _pgd(self.p, self.eps, self.steps, self.step_size, True, loss=kl)
        return run_attack(attack, x, y, step_ctx, self.name)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, *, step_ctx: StepContext) -> tuple[Tensor, dict[str, Any]]:
        if step_ctx.clf.eval_mode:  # the attack's clean probabilities are those of the model in eval mode
            adv = self.perturb(model, x, y, step_ctx)
            logits = model(x)
        else:  # the same model and mode: the loss's clean forward also gives the attack its clean probabilities
            logits = model(x)
            adv = self.perturb(model, x, y, step_ctx, clean_logits=logits)
        logits_adv = model(adv)
        ce = F.cross_entropy(logits, y)
        kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.log_softmax(logits, dim=1), reduction="batchmean",
                      log_target=True)
        return ce + self.beta * kl, {"accuracy": _accuracy(logits, y), "adv_accuracy": _accuracy(logits_adv, y),
                                     "kl": kl.detach()}


@OBJECTIVES.register("cure", radius=None, summary="curvature regularisation (Moosavi-Dezfooli et al.)")
class CURE:
    """CURE (Moosavi-Dezfooli, Fawzi, Uesato and Frossard, CVPR 2019): curvature regularisation.

    ``CE(f(x), y) + lam * E ||grad_x l(x + h z) - grad_x l(x)||_2^2`` with ``z = sign(grad_x l(x)) / ||sign(...)||_2``
    (a unit L2 vector along the gradient-sign direction, held fixed): a finite-difference estimate of the curvature
    of the loss along the direction where it is largest (paper Sec. II-C and III-B3). Both gradients are
    differentiated in the weights. The reference code uses the norm rather than its square; we follow the paper's
    formula.

    Args:
        h: finite-difference step (the reference code anneals it up to 1.5 on CIFAR-10 in [0, 255] / 255 units).
        lam: regularisation weight (4 in the reference).
    """

    name = "cure"

    @checked(h=POSITIVE, lam=NON_NEGATIVE)
    def __init__(self, *, h: float = 1.5, lam: float = 4.0) -> None:
        self.h = float(h)
        self.lam = float(lam)

    def config(self) -> dict[str, Any]:
        return {"h": self.h, "lam": self.lam}

    def regulariser(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample ``||grad l(x + h z) - grad l(x)||_2^2``, differentiable in the weights."""
        return self._logits_and_curvature(model, x, y)[1]

    def _logits_and_curvature(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The clean logits and the per-sample curvature term: the forward pass at ``x`` that the clean gradient
        needs also gives the loss its clean logits (no second clean forward)."""
        def ce(z: Tensor) -> Tensor:
            return F.cross_entropy(z, y, reduction="none")

        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            logits = model(xg)
            (g0,) = torch.autograd.grad(ce(logits).sum(), xg, create_graph=True)
        s = g0.detach().sign()
        z = s / per_sample(s.flatten(1).norm(dim=1).clamp_min(1e-12), s)
        _, g1 = input_grad(model, x + self.h * z, ce, create_graph=True)
        return logits, (g1 - g0).flatten(1).pow(2).sum(1)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, *, step_ctx: StepContext) -> tuple[Tensor, dict[str, Any]]:
        logits, curvature = self._logits_and_curvature(model, x, y)
        ce = F.cross_entropy(logits, y)
        reg = curvature.mean()
        return ce + self.lam * reg, {"accuracy": _accuracy(logits, y), "ce": ce.detach(), "curvature": reg.detach()}


@OBJECTIVES.register("deepfool", radius=None, summary="training on DeepFool's minimal perturbations")
class DeepFoolAT(_OnPerturbed):
    """Training on DeepFool's minimal L2 perturbations (Moosavi-Dezfooli et al., CVPR 2016, Sec. 4; paper eq. (8)).

    ``(1 - w) CE(x, y) + w CE(x + r_df, y)`` where ``r_df`` is DeepFool's minimal L2 perturbation (with overshoot),
    optionally capped at ``max_norm``. Samples already misclassified keep their clean input.

    Args:
        overshoot, max_iter, candidates: passed to :class:`robustlens.attacks.deepfool.DeepFool`.
        max_norm: rescale perturbations longer than this (``None``: no cap).
        weight: ``w``, the weight of the perturbed term.
    """

    name = "deepfool"

    @checked(overshoot=NON_NEGATIVE, max_iter=COUNT, candidates=OPTIONAL_COUNT, max_norm=OPTIONAL_POSITIVE,
             weight=PROBABILITY)
    def __init__(self, *, overshoot: float = 0.02, max_iter: int = 10, candidates: int | None = 10,
                 max_norm: float | None = None, weight: float = 0.5) -> None:
        from ..attacks.deepfool import DeepFool

        self.overshoot = float(overshoot)
        self.max_iter = int(max_iter)
        self.max_norm = None if max_norm is None else check_eps(max_norm)
        self.weight = float(weight)
        self._attack = DeepFool(norm=2, overshoot=overshoot, max_iter=max_iter, candidates=candidates)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext) -> Tensor:
        adv = run_attack(self._attack, x, y, step_ctx, self.name, last_iterate=False)
        if self.max_norm is not None:
            r = adv - x
            n = r.flatten(1).norm(dim=1)
            scale = torch.where(n > self.max_norm, self.max_norm / n.clamp_min(1e-12), torch.ones_like(n))
            adv = step_ctx.clf.clip(x + r * per_sample(scale, r))
        return adv

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, *, step_ctx: StepContext) -> tuple[Tensor, dict[str, Any]]:
        adv = self.perturb(model, x, y, step_ctx)
        w = self.weight
        if w < 1:
            both = model(torch.cat([x, adv]))
            logits, logits_adv = both[: x.shape[0]], both[x.shape[0]:]
            loss = (1 - w) * F.cross_entropy(logits, y) + w * F.cross_entropy(logits_adv, y)
            stats = {"accuracy": _accuracy(logits, y), "adv_accuracy": _accuracy(logits_adv, y)}
        else:
            logits_adv = model(adv)
            loss = F.cross_entropy(logits_adv, y)
            stats = {"adv_accuracy": _accuracy(logits_adv, y)}
        stats["l2"] = (adv - x).flatten(1).norm(dim=1).mean().detach()
        return loss, stats


@OBJECTIVES.register("gaussian", radius="sigma",
                      summary="Gaussian noise augmentation, the base model of smoothing (Cohen et al.)")
class GaussianAugmentation(_OnPerturbed):
    """Training on ``x + sigma * N(0, I)`` (Cohen, Rosenfeld and Kolter, ICML 2019): the base classifier of
    randomized smoothing. The noisy input is not clipped to the bounds, as in the reference."""

    name = "gaussian"

    @checked(sigma=POSITIVE)
    def __init__(self, sigma: float) -> None:
        self.sigma = float(sigma)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext) -> Tensor:
        g = step_ctx.generator(self.name)
        return x + self.sigma * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


NoiseKind = Literal["uniform", "permuted"]


@OBJECTIVES.register("acet", radius="eta", summary="low confidence around noise (Hein et al., eq. 22-23)")
class ACET:
    """Adversarial confidence enhanced training (Hein, Andriushchenko and Bitterwolf, CVPR 2019; paper eq. (22)-(23)).

    ``CE(f(x), y) + lam * E_z max_{||u - z||_p <= eta} max_k log p_k(u)``: the worst-case (log-)confidence in an
    eta-ball around out-of-distribution noise ``z`` is pushed down, so the model is not over-confident far from
    the data. ``z`` is uniform noise in the bounds (``"uniform"``) or the batch's images with their pixels randomly
    permuted (``"permuted"``). The inner maximum is approximated by ``steps`` projected signed-gradient steps.
    """

    name = "acet"

    @checked(eta=NON_NEGATIVE, lam=NON_NEGATIVE, steps=NON_NEGATIVE_INT, step_size=OPTIONAL_POSITIVE)
    def __init__(self, eta: float = 0.3, *, lam: float = 1.0, steps: int = 10, step_size: float | None = None,
                 noise: NoiseKind = "uniform", norm: float | str = INF) -> None:
        if noise not in ("uniform", "permuted"):
            raise ConfigError(f"noise must be 'uniform' or 'permuted', got {noise!r}")
        self.eta = check_eps(eta)
        self.lam = float(lam)
        self.steps = int(steps)
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eta / max(1, self.steps)
        self.noise_kind = noise
        self.p = parse_norm(norm)

    def config(self) -> dict[str, Any]:
        return {"eta": self.eta, "lam": self.lam, "steps": self.steps, "step_size": self.step_size,
                "noise": self.noise_kind, "norm": norm_name(self.p)}

    def noise(self, x: Tensor, step_ctx: StepContext) -> Tensor:
        """Out-of-distribution seeds ``z`` for the batch."""
        g = step_ctx.generator(self.name, "noise")
        lo, hi = step_ctx.clf.bounds
        if self.noise_kind == "uniform":
            return lo + (hi - lo) * torch.rand(x.shape, generator=g, device=x.device, dtype=x.dtype)
        flat = x.flatten(1)
        perm = torch.rand(flat.shape, generator=g, device=x.device).argsort(1)
        return flat.gather(1, perm).view_as(x)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, step_ctx: StepContext) -> Tensor:
        z = self.noise(x, step_ctx)
        if self.steps == 0 or self.eta == 0:
            return z

        attack = _pgd(self.p, self.eta, self.steps, self.step_size, False, loss=_log_confidence)
        return run_attack(attack, z, y, step_ctx, self.name)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, *, step_ctx: StepContext) -> tuple[Tensor, dict[str, Any]]:
        u = self.perturb(model, x, y, step_ctx)
        both = model(torch.cat([x, u]))
        logits, logits_out = both[: x.shape[0]], both[x.shape[0]:]
        ce = F.cross_entropy(logits, y)
        conf = F.log_softmax(logits_out, dim=1).amax(1).mean()
        return ce + self.lam * conf, {"accuracy": _accuracy(logits, y), "ce": ce.detach(),
                                      "ood_confidence": conf.detach().exp()}


def _log_confidence(logits: Tensor, labels: Tensor, targets: Tensor | None) -> Tensor:
    """``max_k log p_k``: the log-confidence ACET maximises around noise (eq. 23)."""
    return F.log_softmax(logits, dim=1).amax(1)


def make_objective(name: str, eps: float | None = None, *, spelling: Mapping[str, str] | None = None,
                   **options: Any) -> Objective:
    """The objective registered as ``name`` (:data:`OBJECTIVES`), built with ``eps`` and ``options``.

    ``eps`` sets the objective's radius under its own name (``sigma`` for ``gaussian``, ``eta`` for ``acet``); an
    option set to ``None`` keeps the objective's default. An option the objective does not take is an error, not
    silently ignored, and every numeric option is checked with the rule its constructor declares
    (:func:`robustlens.checks.checked`) before anything is built. ``spelling`` maps constructor keywords to the
    names the user typed (the command line's ``--step-size`` for ``step_size``), so messages name those.

    Example:
        >>> make_objective("pgd", 0.3, steps=7)
        >>> make_objective("gaussian", 0.25)        # sigma 0.25
    """
    if name not in OBJECTIVES:
        flag = "--objective" if spelling is not None else "objective"
        raise ConfigError(f"unknown {flag} {name!r}; choose one of {', '.join(OBJECTIVES)}")
    entry = OBJECTIVES.entry(name)
    cls: Any = entry.obj
    radius: str | None = entry.meta.get("radius")
    params = inspect.signature(cls).parameters
    spell = dict(spelling or {})
    named = spell.get
    what = f"--objective {entry.name}" if spelling is not None else f"objective {entry.name!r}"
    offered = [k for k in params if k != radius and (spelling is None or k in spell)]
    takes = ([named("eps", "eps")] if radius else []) + [named(k, k) for k in offered]
    accepted = ", ".join(takes) or "no options"
    rules = declared_checks(cls)
    kwargs: dict[str, Any] = {}
    if eps is not None:
        if radius is None:
            raise ConfigError(f"{named('eps', 'eps')} does not apply to {what}; it takes {accepted}")
        kwargs[radius] = check(eps, named("eps", "eps"), rules[radius], what) if radius in rules else eps
    elif radius is not None and params[radius].default is inspect.Parameter.empty:
        kind = "the noise level sigma" if radius == "sigma" else "the radius of the threat model"
        raise ConfigError(f"{what} needs {named('eps', 'eps')} ({kind}, in data units: e.g. 0.3 on MNIST, 8/255 on "
                          "CIFAR-10)")
    for key, value in options.items():
        if value is None:
            continue
        if key not in offered:
            raise ConfigError(f"{named(key, key)} does not apply to {what}; it takes {accepted}")
        kwargs[key] = check(value, named(key, key), rules[key], what) if key in rules else value
    return cls(**kwargs)
