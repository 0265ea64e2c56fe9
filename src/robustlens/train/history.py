"""What training returns: one :class:`EpochRecord` per epoch inside a :class:`TrainingHistory`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..results import Result


@dataclass
class EpochRecord(Result):
    """One epoch of training.

    Attributes:
        epoch: 0-based epoch index.
        lr: learning rate at the end of the epoch.
        train: epoch averages of the objective's statistics (``loss``, ``accuracy``, ...), over all ranks.
        eval: clean ``accuracy`` and ``loss`` on the evaluation data (empty without it).
        metrics: values recorded by callbacks (robust accuracy, gradient alignment, ...).
        samples: training samples processed in the epoch, over all ranks.
        time_s: wall-clock seconds of the training part of the epoch (evaluation and callbacks excluded).
        objective: name of the objective used in this epoch (a callback may switch it).
    """

    epoch: int
    lr: float
    train: dict[str, float] = field(default_factory=dict)
    eval: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    samples: int = 0
    time_s: float = 0.0
    objective: str = ""


@dataclass
class TrainingHistory(Result):
    """What :func:`fit` returns: the configuration and one :class:`EpochRecord` per completed epoch.

    Attributes:
        config: the run's settings (objective, optimizer, lr, schedule, epochs, batch size, seed, world size...).
        records: one record per completed epoch, in order.
        stopped_early: whether a callback stopped the run before ``epochs``.
        stop_reason: why, when it did.
        checkpoint: path of the last checkpoint written (``None`` without ``out_dir``).
    """

    config: dict[str, Any] = field(default_factory=dict)
    records: list[EpochRecord] = field(default_factory=list)
    stopped_early: bool = False
    stop_reason: str | None = None
    checkpoint: str | None = None

    def series(self, key: str) -> list[float]:
        """Values of one quantity over epochs: ``"train.loss"``, ``"eval.accuracy"``, ``"metrics.robust_accuracy"``,
        ``"time_s"``... (``nan`` where an epoch did not record it)."""
        section, _, name = key.partition(".")
        out = []
        for r in self.records:
            if not name:
                out.append(float(getattr(r, section)))
                continue
            d = getattr(r, section)
            v = d.get(name, float("nan"))
            out.append(float(v) if isinstance(v, (int, float)) else float("nan"))
        return out

    @property
    def last(self) -> EpochRecord:
        if not self.records:
            raise ConfigError("the history has no completed epoch")
        return self.records[-1]


__all__ = ["EpochRecord", "TrainingHistory"]
