"""Training diagnostics as callbacks of the one loop (paper Sec. III-B2).

A callback is any object with ``on_epoch_end(trainer, epoch, history)`` (see :class:`robustlens.train.Callback`);
it records what it measures in ``history.records[epoch].metrics`` and may stop the run or switch the objective.

- :class:`RobustOverfittingTracker`: PGD robust accuracy on a held-out split after every epoch, keeping the weights
  of the best robust epoch (Rice, Wong and Kolter, ICML 2020: the best test robustness of adversarial training is
  reached in the middle of training).
- :class:`CatastrophicOverfittingDetector`: PGD accuracy collapsing while FGSM accuracy stays high, with the
  gradient-alignment cosine of Andriushchenko and Flammarion (2020) (Wong et al., ICLR 2020; paper Sec. III-B2);
  warns, and can stop, switch objective and restore the last good weights.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..checks import COUNT, NON_NEGATIVE, OPTIONAL_COUNT, PROBABILITY, Number, checked
from ..errors import ConfigError, RobustLensWarning
from ..norms import INF, check_eps, parse_norm
from .checkpoint import save_checkpoint
from .history import TrainingHistory
from .objectives import OPTIONAL_POSITIVE

if TYPE_CHECKING:
    from .contracts import Objective
    from .trainer import Trainer


def _held_out(x: Tensor, y: Tensor, n: int | None) -> tuple[Tensor, Tensor]:
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"held-out split: {x.shape[0]} inputs but {y.shape[0]} labels")
    if n is not None:
        x, y = x[:n], y[:n]
    return x, y


def pgd_accuracy(trainer: Trainer, x: Tensor, y: Tensor, *, eps: float, p: float, steps: int,
                 alpha: float | None, seed: int, restarts: int = 1) -> float:
    """Robust accuracy (eq. 12) of the trainer's current model under the attacks package's PGD, in eval mode."""
    from ..attacks.pgd import PGD

    clf = trainer.classifier()
    attack = PGD(norm=p, eps=eps, steps=steps, alpha=alpha, random_start=True, restarts=restarts)
    correct = 0
    for i in range(0, x.shape[0], trainer.eval_batch_size):
        xb = x[i:i + trainer.eval_batch_size].to(trainer.device)
        yb = y[i:i + trainer.eval_batch_size].to(trainer.device)
        res = attack(clf, xb, yb, seed=seed, indices=torch.arange(i, i + xb.shape[0]))
        correct += int((res.clean_correct & ~res.success).sum())
    return correct / max(1, x.shape[0])


def fgsm_accuracy(trainer: Trainer, x: Tensor, y: Tensor, *, eps: float, p: float) -> float:
    """Accuracy under the attacks package's FGSM (zero start), in eval mode."""
    return fgsm_and_clean_accuracy(trainer, x, y, eps=eps, p=p)[0]


def fgsm_and_clean_accuracy(trainer: Trainer, x: Tensor, y: Tensor, *, eps: float, p: float) -> tuple[float, float]:
    """Accuracy under FGSM (zero start) and clean accuracy, both from the one FGSM pass, in eval mode."""
    from ..attacks.fgsm import FGSM

    clf = trainer.classifier()
    attack = FGSM(norm=p, eps=eps)
    robust = clean = 0
    for i in range(0, x.shape[0], trainer.eval_batch_size):
        xb = x[i:i + trainer.eval_batch_size].to(trainer.device)
        yb = y[i:i + trainer.eval_batch_size].to(trainer.device)
        res = attack(clf, xb, yb)
        robust += int((res.clean_correct & ~res.success).sum())
        clean += int(res.clean_correct.sum())
    n = max(1, x.shape[0])
    return robust / n, clean / n


def gradient_alignment(trainer: Trainer, x: Tensor, y: Tensor, *, eps: float, seed: int) -> float:
    """Mean cosine between ``grad_x CE(x)`` and ``grad_x CE(x + eta)``, ``eta`` uniform in the Linf eps-cube
    (Andriushchenko and Flammarion, 2020): near 1 while the loss is locally linear, it drops when catastrophic
    overfitting sets in."""
    from ..seeding import generator

    clf = trainer.classifier()
    x, y = x.to(clf.device), y.to(clf.device)
    g = generator(seed, "gradient-alignment", device="cpu")
    u = torch.rand(x.shape, generator=g).to(x)
    x2 = clf.clip(x + (2 * u - 1) * eps)
    _, g1 = clf.loss_and_input_grad(x, y, validate=False)
    _, g2 = clf.loss_and_input_grad(x2, y, validate=False)
    return float(F.cosine_similarity(g1.flatten(1), g2.flatten(1), dim=1, eps=1e-12).mean())


def _state_copy(trainer: Trainer) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}


class RobustOverfittingTracker:
    """PGD robust accuracy on a held-out split after every epoch; keeps the best robust weights.

    Records ``metrics["robust_accuracy"]`` each epoch and, when the trainer has an ``out_dir``, writes the best
    weights to ``out_dir/best_robust.pt`` (a state dict, loadable with ``torch.load(weights_only=True)``).
    ``restore_best=True`` loads them into the model at the end of training (early stopping of Rice et al. 2020).

    Args:
        x, y: held-out inputs (data range) and labels.
        eps, norm, steps, alpha, restarts: the PGD evaluation attack (default 10 steps, ``alpha = 2.5 eps / steps``).
        n: evaluate on the first ``n`` held-out samples only.
        seed: seed of the attack's random starts (the same every epoch, so epochs compare the model, not the draw).
    """

    @checked(eps=NON_NEGATIVE, steps=COUNT, alpha=OPTIONAL_POSITIVE, restarts=COUNT, n=OPTIONAL_COUNT)
    def __init__(self, x: Tensor, y: Tensor, *, eps: float, norm: float | str = INF, steps: int = 10,
                 alpha: float | None = None, restarts: int = 1, n: int | None = None, seed: int = 0,
                 restore_best: bool = False) -> None:
        self.x, self.y = _held_out(x, y, n)
        self.eps = check_eps(eps)
        self.p = parse_norm(norm)
        self.steps = int(steps)
        self.alpha = alpha
        self.restarts = int(restarts)
        self.seed = int(seed)
        self.restore_best = restore_best
        self.best_accuracy = -1.0
        self.best_epoch = -1
        self.best_state: dict[str, Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, history: TrainingHistory) -> None:
        acc = pgd_accuracy(trainer, self.x, self.y, eps=self.eps, p=self.p, steps=self.steps, alpha=self.alpha,
                           seed=self.seed, restarts=self.restarts)
        rec = history.records[-1]
        rec.metrics["robust_accuracy"] = acc
        if acc > self.best_accuracy:
            self.best_accuracy, self.best_epoch = acc, epoch
            self.best_state = _state_copy(trainer)
            if trainer.out_dir is not None and trainer.dist.is_main:
                save_checkpoint(trainer.out_dir / "best_robust.pt", self.best_state)
        rec.metrics["best_robust_accuracy"] = self.best_accuracy
        rec.metrics["best_robust_epoch"] = self.best_epoch

    def on_train_end(self, trainer: Trainer, history: TrainingHistory) -> None:
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"best_accuracy": self.best_accuracy, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.best_accuracy = float(d["best_accuracy"])
        self.best_epoch = int(d["best_epoch"])
        self.best_state = d.get("best_state")


Action = Literal["warn", "stop", "switch"]


class CatastrophicOverfittingDetector:
    """Flags catastrophic overfitting (Wong et al., ICLR 2020; Andriushchenko & Flammarion, NeurIPS 2020).

    After every epoch, on a held-out split: PGD accuracy, FGSM accuracy and the gradient-alignment cosine
    (:func:`gradient_alignment`). Catastrophic overfitting is flagged when the FGSM accuracy exceeds the PGD accuracy
    by at least ``gap`` *and* the PGD accuracy has either fallen by at least ``drop`` below its best value so far or
    collapsed below ``collapse`` times the FGSM accuracy: the model has learnt to defeat the single-step attack it
    trains on while becoming vulnerable to the multi-step one. The second branch catches a collapse inside the first
    epoch (FGSM training at eps = 0.3 on MNIST: PGD accuracy 0 and FGSM accuracy 0.77 after one epoch), when there is
    no earlier PGD accuracy to fall from; early healthy training (PGD accuracy 0.12 beside FGSM accuracy 0.49 for
    GradAlign after two MNIST epochs) stays above it.

    A second failure of single-step training is flagged too: the held-out *clean* accuracy falling by at least
    ``clean_drop`` below its best so far. GradAlign from a random start at lam 0.3 on MNIST fell from 99% to 10%
    clean accuracy in one epoch while it still fitted its FGSM training points (93-96%), as in label leaking
    (Kurakin et al., ICLR 2017), where the model reads the label from its single-step perturbation. There the FGSM
    accuracy falls with the PGD accuracy, so the first rule stays silent.

    Records ``metrics["pgd_accuracy"]``, ``["fgsm_accuracy"]``, ``["clean_accuracy"]``, ``["grad_cosine"]``,
    ``["clean_collapse"]`` and ``["catastrophic_overfitting"]`` (either failure) each epoch. On detection it always
    warns (:class:`RobustLensWarning`), then:
    ``"warn"`` continues; ``"stop"`` ends training; ``"switch"`` replaces the trainer's objective by ``switch_to``
    (e.g. :class:`~robustlens.train.objectives.GradAlign` or PGD-AT). With ``restore_best`` the weights of the
    epoch of best PGD accuracy are restored before stopping or switching.
    """

    @checked(eps=NON_NEGATIVE, pgd_steps=COUNT, n=OPTIONAL_COUNT, drop=PROBABILITY, gap=PROBABILITY,
             collapse=Number(low=0, high=1, high_open=True), clean_drop=Number(low=0, high=1, low_open=True,
                                                                               optional=True))
    def __init__(self, x: Tensor, y: Tensor, *, eps: float, norm: float | str = INF, pgd_steps: int = 10,
                 n: int | None = 512, drop: float = 0.2, gap: float = 0.2, collapse: float = 0.1,
                 clean_drop: float | None = 0.3, action: Action = "warn",
                 switch_to: Objective | None = None, restore_best: bool = True, seed: int = 0) -> None:
        if action not in ("warn", "stop", "switch"):
            raise ConfigError(f"action must be 'warn', 'stop' or 'switch', got {action!r}")
        if action == "switch" and switch_to is None:
            raise ConfigError("action='switch' needs switch_to=<objective>, e.g. GradAlign(eps) or PGDAT(eps)")
        self.x, self.y = _held_out(x, y, n)
        self.eps = check_eps(eps)
        self.p = parse_norm(norm)
        self.pgd_steps = int(pgd_steps)
        self.drop = float(drop)
        self.gap = float(gap)
        self.collapse = float(collapse)
        self.clean_drop = clean_drop
        self.action = action
        self.switch_to = switch_to
        self.restore_best = restore_best
        self.seed = int(seed)
        self.best_pgd = -1.0
        self.best_epoch = -1
        self.best_clean = -1.0
        self.best_state: dict[str, Tensor] | None = None
        self.detected_epoch: int | None = None

    def measure(self, trainer: Trainer) -> dict[str, float]:
        """PGD, FGSM and clean accuracy and the gradient-alignment cosine of the current model on the held-out
        split."""
        fgsm, clean = fgsm_and_clean_accuracy(trainer, self.x, self.y, eps=self.eps, p=self.p)
        return {
            "pgd_accuracy": pgd_accuracy(trainer, self.x, self.y, eps=self.eps, p=self.p, steps=self.pgd_steps,
                                         alpha=None, seed=self.seed),
            "fgsm_accuracy": fgsm,
            "clean_accuracy": clean,
            "grad_cosine": gradient_alignment(trainer, self.x, self.y, eps=self.eps, seed=self.seed),
        }

    def is_catastrophic(self, pgd: float, fgsm: float) -> bool:
        """The detection rule: PGD accuracy ``gap`` below the FGSM accuracy and either ``drop`` below its best so far
        or below ``collapse`` times the FGSM accuracy."""
        fell = self.best_pgd - pgd >= self.drop or pgd < self.collapse * fgsm
        return fgsm - pgd >= self.gap and fell

    def is_clean_collapse(self, clean: float) -> bool:
        """The clean-accuracy rule: held-out clean accuracy ``clean_drop`` below its best so far."""
        return self.clean_drop is not None and self.best_clean - clean >= self.clean_drop

    def on_epoch_end(self, trainer: Trainer, epoch: int, history: TrainingHistory) -> None:
        m = self.measure(trainer)
        masked = self.is_catastrophic(m["pgd_accuracy"], m["fgsm_accuracy"])
        leaked = self.is_clean_collapse(m["clean_accuracy"])
        flagged = masked or leaked
        if m["pgd_accuracy"] > self.best_pgd:
            self.best_pgd, self.best_epoch = m["pgd_accuracy"], epoch
            if self.restore_best:
                self.best_state = _state_copy(trainer)
        self.best_clean = max(self.best_clean, m["clean_accuracy"])
        rec = history.records[-1]
        rec.metrics.update(m)
        rec.metrics["clean_collapse"] = leaked
        rec.metrics["catastrophic_overfitting"] = flagged
        if not flagged:
            return
        if self.detected_epoch is None:
            self.detected_epoch = epoch
        if masked:
            msg = (f"catastrophic overfitting at epoch {epoch}: PGD accuracy {m['pgd_accuracy']:.3f} (best "
                   f"{self.best_pgd:.3f} at epoch {self.best_epoch}) while FGSM accuracy is "
                   f"{m['fgsm_accuracy']:.3f}; gradient alignment {m['grad_cosine']:.3f}. Use FGSM with a random "
                   "start and a smaller step, GradAlign, or PGD training")
        else:
            msg = (f"catastrophic overfitting at epoch {epoch}: held-out clean accuracy fell to "
                   f"{m['clean_accuracy']:.3f} (best {self.best_clean:.3f}) with PGD accuracy "
                   f"{m['pgd_accuracy']:.3f}, as when the model reads the label from its single-step perturbation "
                   "(label leaking). Use a smaller regulariser weight or step, add clean examples, or train with PGD")
        if trainer.dist.is_main:
            warnings.warn(msg, RobustLensWarning, stacklevel=2)
        if self.action == "warn":
            return
        if self.restore_best and self.best_state is not None:
            trainer.model.load_state_dict(self.best_state)
            rec.metrics["restored_epoch"] = self.best_epoch
        if self.action == "stop":
            trainer.stop_training = True
            trainer.stop_reason = msg
        elif self.switch_to is not None and trainer.objective is not self.switch_to:
            rec.metrics["switched_to"] = self.switch_to.name
            trainer.objective = self.switch_to
            self.best_pgd = self.best_clean = -1.0  # judge the new objective on its own trajectory

    def state_dict(self) -> dict[str, Any]:
        return {"best_pgd": self.best_pgd, "best_epoch": self.best_epoch, "best_clean": self.best_clean,
                "best_state": self.best_state,
                "detected_epoch": -1 if self.detected_epoch is None else self.detected_epoch}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.best_pgd = float(d["best_pgd"])
        self.best_epoch = int(d["best_epoch"])
        self.best_clean = float(d.get("best_clean", -1.0))  # checkpoints written before the clean-accuracy rule
        self.best_state = d.get("best_state")
        self.detected_epoch = None if int(d["detected_epoch"]) < 0 else int(d["detected_epoch"])


