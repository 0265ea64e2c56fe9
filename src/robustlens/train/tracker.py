"""Subspace margins during training (paper Sec. III-B1): a callback for :func:`robustlens.train.fit`.

The margins inside a family of subspaces (eq. 18; e.g. diagonal DCT blocks from low to high frequency) show where
the network builds decision boundaries as it learns: margins shrink in the subspaces where it finds
discriminative features and stay large in those it becomes invariant to (Ortiz-Jimenez et al., NeurIPS 2020).
:class:`MarginTracker` measures them on a fixed held-out batch every ``every`` epochs with
:func:`~robustlens.geometry.subspaces.subspace_margins` and keeps the history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..geometry.subspaces import Subspace, SubspaceMarginResult, _as_subspaces, subspace_margins
from ..results import Result

if TYPE_CHECKING:
    from .history import TrainingHistory
    from .trainer import Trainer


@dataclass
class MarginTrackResult(Result):
    """Subspace margins recorded during training.

    Attributes:
        epochs: the (0-based) epochs at which the margins were measured.
        names, positions: the subspaces.
        median, q_low, q_high: ``(E, S)`` median and quantiles over correctly classified samples, per recorded
            epoch and subspace.
        accuracy: ``(E,)`` fraction of the tracked samples the model classified correctly.
        quantiles: the levels of ``q_low`` / ``q_high``.
    """

    epochs: list[int]
    names: list[str]
    positions: list[float]
    median: Tensor
    q_low: Tensor
    q_high: Tensor
    accuracy: Tensor
    quantiles: tuple[float, float] = (0.25, 0.75)
    settings: dict[str, Any] = field(default_factory=dict)


class MarginTracker:
    """Record the margin distribution in each subspace every ``every`` epochs (Sec. III-B1, eq. 18).

    Args:
        x, y: held-out inputs (data range) and labels; the same samples are measured every time.
        subspaces: a list of :class:`~robustlens.geometry.subspaces.Subspace` (e.g.
            ``diagonal_dct_subspaces(x.shape[1:], block=8)``), a dict ``name -> basis`` or one basis.
        every: measure after epochs ``0, every, 2 every, ...`` and after the last epoch.
        n: use the first ``n`` samples only.
        overshoot, max_iter, candidates, quantiles, batch_size: passed to
            :func:`~robustlens.geometry.subspaces.subspace_margins`.
        seed: recorded with the measurements (DeepFool itself draws nothing).

    Each measurement is written to ``history.records[epoch].metrics`` as ``subspace_margin_median``,
    ``subspace_margin_q_low`` and ``subspace_margin_q_high`` (lists, one value per subspace);
    :meth:`result` gathers them into a :class:`MarginTrackResult` and :attr:`last` holds the latest full
    :class:`~robustlens.geometry.subspaces.SubspaceMarginResult`.

    Example:
        >>> tracker = MarginTracker(xt[:200], yt[:200], diagonal_dct_subspaces((1, 28, 28), block=8), every=2)
        >>> fit(model, (x, y), epochs=10, callbacks=[tracker])
        >>> plot_margin_evolution(tracker.result())
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        subspaces: Sequence[Subspace] | Mapping[str, Tensor] | Tensor,
        *,
        every: int = 1,
        n: int | None = None,
        overshoot: float = 0.02,
        max_iter: int = 50,
        candidates: int | None = None,
        quantiles: tuple[float, float] = (0.25, 0.75),
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        if every < 1:
            raise ConfigError(f"every must be >= 1 (measure every N epochs), got {every}")
        if x.shape[0] != y.shape[0]:
            raise ConfigError(f"held-out split: {x.shape[0]} inputs but {y.shape[0]} labels")
        self.x, self.y = (x[:n], y[:n]) if n is not None else (x, y)
        self.subspaces = _as_subspaces(subspaces)
        self.every = int(every)
        self.overshoot = float(overshoot)
        self.max_iter = int(max_iter)
        self.candidates = candidates
        self.quantiles = (float(quantiles[0]), float(quantiles[1]))
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epochs: list[int] = []
        self.medians: list[list[float]] = []
        self.q_lows: list[list[float]] = []
        self.q_highs: list[list[float]] = []
        self.accuracies: list[float] = []
        self.last: SubspaceMarginResult | None = None

    def should_measure(self, epoch: int, total_epochs: int) -> bool:
        return epoch % self.every == 0 or epoch == total_epochs - 1

    def measure(self, trainer: Trainer) -> SubspaceMarginResult:
        """The margins of the trainer's current model (eval mode) on the tracked samples."""
        return subspace_margins(
            trainer.classifier(), (self.x, self.y), self.subspaces, overshoot=self.overshoot,
            max_iter=self.max_iter, candidates=self.candidates, quantiles=self.quantiles,
            batch_size=self.batch_size, seed=self.seed, progress=False,
        )

    def on_epoch_end(self, trainer: Trainer, epoch: int, history: TrainingHistory) -> None:
        if not self.should_measure(epoch, trainer.epochs):
            return
        res = self.measure(trainer)
        self.last = res
        med, lo, hi = (t.tolist() for t in (res.median, res.q_low, res.q_high))
        self.epochs.append(int(epoch))
        self.medians.append(med)
        self.q_lows.append(lo)
        self.q_highs.append(hi)
        self.accuracies.append(float(res.clean_correct.float().mean()))
        rec = history.records[-1]
        rec.metrics["subspace_margin_median"] = med
        rec.metrics["subspace_margin_q_low"] = lo
        rec.metrics["subspace_margin_q_high"] = hi

    def result(self) -> MarginTrackResult:
        """Everything recorded so far."""
        s = len(self.subspaces)

        def mat(rows: list[list[float]]) -> Tensor:
            return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), s)

        return MarginTrackResult(
            epochs=list(self.epochs), names=[sp.name for sp in self.subspaces],
            positions=[sp.position for sp in self.subspaces], median=mat(self.medians), q_low=mat(self.q_lows),
            q_high=mat(self.q_highs), accuracy=torch.tensor(self.accuracies, dtype=torch.float64),
            quantiles=self.quantiles,
            settings={"every": self.every, "overshoot": self.overshoot, "max_iter": self.max_iter,
                      "candidates": self.candidates, "samples": int(self.x.shape[0]), "seed": self.seed},
        )

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": list(self.epochs), "medians": self.medians, "q_lows": self.q_lows,
                "q_highs": self.q_highs, "accuracies": list(self.accuracies)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.epochs = [int(e) for e in d["epochs"]]
        self.medians = [list(map(float, r)) for r in d["medians"]]
        self.q_lows = [list(map(float, r)) for r in d["q_lows"]]
        self.q_highs = [list(map(float, r)) for r in d["q_highs"]]
        self.accuracies = [float(a) for a in d["accuracies"]]


def plot_margin_evolution(track: MarginTrackResult, ax: Any = None, *, cmap: str = "viridis") -> Any:
    """The median margin profile (low -> high frequency) at each recorded epoch, coloured by epoch."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    colors = plt.get_cmap(cmap)(np.linspace(0, 1, max(1, len(track.epochs))))
    xs = np.asarray(track.positions, dtype=float)
    for i, ep in enumerate(track.epochs):
        ax.plot(xs, track.median[i].numpy(), color=colors[i], lw=1.8, label=f"epoch {ep + 1}")
    ax.set_xlabel("subspace (low -> high frequency)")
    ax.set_ylabel("median margin ||r*_S||_2")
    if len(track.names) <= 16:
        ax.set_xticks(track.positions)
        ax.set_xticklabels(track.names, rotation=45, ha="right", fontsize=7)
    ax.legend(fontsize=7)
    return ax


__all__ = ["MarginTrackResult", "MarginTracker", "plot_margin_evolution"]
