"""The training contracts: what the loop hands an objective (:class:`StepContext`), what an objective is
(:class:`Objective`) and what a callback is (:class:`Callback`).

They live below the loop (:mod:`robustlens.train.trainer`) and the objectives (:mod:`robustlens.train.objectives`), so
that both depend on them and not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..classifier import Classifier
from ..seeding import SampleRNG, generator, stable_hash

if TYPE_CHECKING:
    from .history import TrainingHistory
    from .trainer import Trainer


@dataclass
class StepContext:
    """What an objective may use besides the model and the batch.

    Attributes:
        epoch: 0-based epoch index.
        step: global optimisation step (0-based, counted on this rank).
        indices: dataset index of every sample of the batch (keys per-sample random streams).
        seed: the run's seed.
        clf: a :class:`~robustlens.classifier.Classifier` on the *unwrapped* model, for attacks. Built with
            ``eval_mode=False`` when the trainer's ``attack_mode`` is ``"train"`` (the model is attacked as it is
            trained, BatchNorm in batch-statistics mode, as in Madry et al. and Wong et al.), else ``True``.
        rank: this process' rank (0 for one process).
        trainer: the running :class:`Trainer` (read-only use).
    """

    epoch: int
    step: int
    indices: Tensor
    seed: int
    clf: Classifier
    rank: int = 0
    trainer: Trainer | None = None

    def sample_rng(self, *key: object) -> SampleRNG:
        """Per-sample random streams keyed by ``(seed, key, epoch)`` and each sample's dataset index.

        The draw for one sample does not depend on the batch size, the rank or the resume point.
        """
        return SampleRNG(stable_hash(self.seed, "train", self.epoch, *key), self.indices)

    def generator(self, *key: object) -> torch.Generator:
        """A generator for batched draws, seeded from ``(seed, key, epoch, step, rank)`` on the model's device."""
        return generator(self.seed, "train-step", self.epoch, self.step, self.rank, *key, device=self.clf.device)


@runtime_checkable
class Objective(Protocol):
    """A training objective: the per-batch loss minimised by the loop.

    ``loss`` returns the scalar loss to back-propagate (the batch mean) and a dict of statistics (floats or 0-d
    tensors, averaged over the epoch and logged). ``model`` is the module to train (wrapped in
    ``DistributedDataParallel`` under torchrun), already in train mode; it maps data-space inputs to logits.
    """

    name: str

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, *, step_ctx: StepContext) -> tuple[Tensor, dict[str, Any]]:
        ...


class Callback(Protocol):
    """Called by the loop after each epoch's evaluation. Set ``trainer.stop_training = True`` to stop.

    Optional methods the loop calls when present: ``on_train_begin(trainer)``, ``on_batch_end(trainer, step_ctx,
    stats)``, ``on_train_end(trainer, history)``, ``state_dict()`` / ``load_state_dict(d)`` (saved in checkpoints;
    must hold only tensors and plain Python values).
    """

    def on_epoch_end(self, trainer: Trainer, epoch: int, history: TrainingHistory) -> None:
        ...


__all__ = ["Callback", "Objective", "StepContext"]
