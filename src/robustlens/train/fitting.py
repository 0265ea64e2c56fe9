"""The one entry point of training: :func:`fit` builds a :class:`~robustlens.train.trainer.Trainer` and runs it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..checks import checked
from ..classifier import Classifier
from .contracts import Callback, Objective
from .datasets import DataSpec
from .history import TrainingHistory
from .trainer import SETTINGS, OptimizerName, Schedule, Trainer


@checked(**SETTINGS)
def fit(
    model: nn.Module | Classifier,
    train_data: DataSpec,
    *,
    objective: Objective | None = None,
    epochs: int = 1,
    optimizer: OptimizerName = "sgd",
    lr: float = 0.1,
    momentum: float = 0.9,
    schedule: Schedule = "cosine",
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    seed: int = 0,
    eval_data: DataSpec | None = None,
    callbacks: Sequence[Callback] = (),
    out_dir: str | Path | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = True,
    bounds: tuple[float, float] | None = None,
    attack_mode: Literal["train", "eval"] = "train",
    eps_warmup: float = 0.0,
) -> TrainingHistory:
    """Train ``model`` on ``train_data`` by minimising ``objective`` (paper eq. (1), or eq. (14) for adversarial
    objectives) and return the :class:`TrainingHistory`.

    Args:
        model: a module mapping data-space inputs to logits, or a :class:`Classifier` (its mean/std are applied
            inside; its bounds are used by the attacks). Trained in place.
        train_data: a ``Dataset`` of ``(x, y)`` or a pair of tensors; inputs in the data range ``bounds``.
        objective: an :class:`Objective` (default: :class:`~robustlens.train.objectives.Standard` cross-entropy).
        epochs: number of passes over the data.
        optimizer: ``"sgd"`` (with ``momentum``, Nesterov off) or ``"adam"``.
        lr: the (peak) learning rate.
        schedule: ``"cosine"`` (annealed to 0 per step), ``"onecycle"`` (Smith & Topin 2019, used by Wong et al.
            2020 for fast AT) or ``"constant"``.
        weight_decay: L2 weight decay of the optimizer.
        batch_size: global batch size (split over processes under torchrun).
        seed: seed of the data order and of every random draw of the objectives.
        eval_data: held-out data evaluated (clean accuracy, loss) after every epoch.
        callbacks: objects with ``on_epoch_end(trainer, epoch, history)``; see :class:`Callback`.
        out_dir: where ``checkpoint.pt`` (each epoch, atomic) and ``history.json`` are written (rank 0).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (settings must match).
        device: where to train (default: the model's device).
        amp: mixed precision (float16 autocast + gradient scaling), CUDA only.
        channels_last: channels-last memory format for 4-d inputs, CUDA only.
        progress: show a tqdm bar per epoch (rank 0).
        bounds: data range for attacks (default ``(0, 1)``, or the Classifier's).
        attack_mode: ``"train"`` attacks the model in train mode (BatchNorm batch statistics, as in Madry et al.
            2018 and Wong et al. 2020), ``"eval"`` in eval mode.
        eps_warmup: epochs over which the radius of an adversarial objective (one with ``eps`` and
            ``at_radius``: PGD-AT, TRADES, FGSM, FGSM-RS, GradAlign) grows linearly to ``eps``
            (:class:`~robustlens.train.warmup.EpsWarmup`); 0 (default) trains at ``eps`` from the first step. The mean
            radius of each epoch is recorded as ``train["eps"]``.

    Example:
        >>> from robustlens.train import fit, PGDAT
        >>> hist = fit(model, (x, y), objective=PGDAT(eps=0.3, steps=10), epochs=10, lr=0.05, eval_data=(xt, yt))
        >>> hist.series("eval.accuracy")
    """
    trainer = Trainer(
        model, objective=objective, epochs=epochs, optimizer=optimizer, lr=lr, momentum=momentum,
        schedule=schedule, weight_decay=weight_decay, batch_size=batch_size, seed=seed, callbacks=callbacks,
        out_dir=out_dir, resume=resume, device=device, amp=amp, channels_last=channels_last, progress=progress,
        bounds=bounds, attack_mode=attack_mode, eps_warmup=eps_warmup,
    )
    return trainer.fit(train_data, eval_data)


__all__ = ["fit"]
