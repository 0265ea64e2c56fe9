"""The evaluation data of a report and how sections choose their samples from it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..classifier import Classifier
from ..seeding import generator


@dataclass
class ReportData:
    """The evaluation data of a report: inputs in the data range, integer labels, and their description."""

    name: str
    x: Tensor
    y: Tensor
    bounds: tuple[float, float] = (0.0, 1.0)
    class_names: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.y.max()) + 1

    def order(self) -> Tensor:
        """A fixed shuffle of the samples (the same for every seed and run), so that any prefix of it mixes the
        classes even when the data are stored sorted by class."""
        return torch.randperm(len(self.y), generator=generator(0, "report-samples"))

    def head(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` samples in :meth:`order` (every section and every resumed run sees the same ones)."""
        return self.take(0, n)

    def take(self, start: int, n: int) -> tuple[Tensor, Tensor]:
        """``n`` samples of :meth:`order` from position ``start`` (wrapping around when the data run out), e.g.
        the samples a universal perturbation is fitted on, disjoint from the evaluated head when there are enough."""
        order = self.order()
        idx = order[(torch.arange(start, start + n) % len(order))]
        return self.x[idx], self.y[idx]

    def correct_head(self, clf: Classifier, n: int, *, purpose: str = "") -> tuple[Tensor, Tensor]:
        """Up to ``n`` samples ``clf`` classifies correctly, taken in :meth:`order` from the start (a wider window
        than ``n`` is scanned, so a less accurate model still gets ``n`` samples when the data have them).

        With ``purpose`` (``"no sample to cut through"``), finding none is a ``ValueError`` that says so."""
        x, y = self.head(min(len(self.y), max(4 * n, n + 64)))
        ok = clf.predict(x) == y.to(clf.device)
        idx = ok.nonzero().flatten().cpu()[:n]
        if purpose and idx.numel() == 0:
            raise ValueError(f"the model classifies none of the report's samples correctly: {purpose}")
        return x[idx], y[idx]

    @classmethod
    def from_image_data(cls, ds: object) -> ReportData:
        """From a :class:`robustlens.data.ImageData` (anything with ``x``, ``y``, ``name``, ``bounds``,
        ``classes``)."""
        return cls(name=str(getattr(ds, "name", "data")), x=ds.x, y=ds.y,  # type: ignore[attr-defined]
                   bounds=tuple(getattr(ds, "bounds", (0.0, 1.0))),  # type: ignore[arg-type]
                   class_names=list(getattr(ds, "classes", None) or []) or None)


def data_range(clf: Classifier) -> float:
    """The width of the classifier's data box (1 when it is unbounded)."""
    lo, hi = clf.bounds
    return float(hi - lo) if math.isfinite(hi - lo) else 1.0


__all__ = ["ReportData", "data_range"]
