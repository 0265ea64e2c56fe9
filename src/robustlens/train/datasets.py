"""What the loop trains on: a ``Dataset`` or tensors (:func:`as_dataset`), items keyed by their dataset index
(:class:`IndexedDataset`) and a normalising model trained in data space (:class:`DataSpace`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from ..errors import InputError

DataSpec = Dataset | tuple[Tensor, Tensor] | Sequence[Tensor]


class IndexedDataset(Dataset):
    """Wraps a dataset so that items are ``(x, y, index)``: the index keys per-sample random streams."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        x, y = self.base[i][:2]
        return x, y, i


class DataSpace(nn.Module):
    """A module applying ``(x - mean) / std`` before ``model``: trains a :class:`Classifier`'s model in data space."""

    mean: Tensor | None
    std: Tensor | None

    def __init__(self, model: nn.Module, mean: Tensor | None, std: Tensor | None) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", None if mean is None else mean.clone(), persistent=False)
        self.register_buffer("std", None if std is None else std.clone(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if self.mean is not None:
            x = x - self.mean.view(shape)
        if self.std is not None:
            x = x / self.std.view(shape)
        return self.model(x)


def as_dataset(data: DataSpec, name: str) -> Dataset:
    """Accept a ``Dataset`` or a pair of tensors ``(x, y)`` (also the objects ``robustlens.data`` returns)."""
    if isinstance(data, Dataset):
        return data
    if hasattr(data, "x") and hasattr(data, "y") and isinstance(data.x, Tensor):
        return TensorDataset(data.x, data.y)  # type: ignore[union-attr]
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise InputError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels; pass one label per input")
        if not x.is_floating_point():
            raise InputError(f"{name}: inputs must be floating point in the data range, got {x.dtype} "
                             "(images stored as 0-255 integers: use x.float() / 255)")
        if y.is_floating_point() or y.ndim != 1:
            raise InputError(f"{name}: labels must be a 1-d tensor of class indices, got {y.dtype} {tuple(y.shape)}")
        return TensorDataset(x, y)
    raise InputError(f"{name} must be a torch Dataset or a pair (x, y) of tensors, got {type(data).__name__}")


def tensors_of(ds: Dataset) -> tuple[Tensor, Tensor]:
    if isinstance(ds, TensorDataset):
        return ds.tensors[0], ds.tensors[1]
    xs, ys = zip(*(ds[i][:2] for i in range(len(ds))), strict=True)  # type: ignore[arg-type]
    return torch.stack(list(xs)), torch.as_tensor(ys)


__all__ = ["DataSpace", "DataSpec", "IndexedDataset", "as_dataset", "tensors_of"]
