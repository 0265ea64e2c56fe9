"""``ImageData``: an in-memory image classification set in the data range, with its metadata.

Every loader in :mod:`robustlens.data` returns one. Images are a float tensor ``x`` of shape ``(N, C, H, W)`` in the
data range ``bounds`` (``[0, 1]`` for all built-in sets, i.e. the input space ``X`` of the paper, Sec. II-A, where
perturbations are measured); labels ``y`` are a ``long`` tensor. ``indices`` keeps each sample's position in the
original set, so per-sample random streams (:class:`robustlens.seeding.SampleRNG`) follow a sample through
subsets and splits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, InputError, LabelError
from ..seeding import generator, stable_hash

if TYPE_CHECKING:
    from torch import nn

    from ..classifier import Classifier


def _mix64(values: np.ndarray, salt: int) -> np.ndarray:
    """SplitMix64 finaliser of ``values + salt`` (Steele et al., 2014): a fixed, platform-independent 64-bit hash."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(salt) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _apportion(quotas: Sequence[float], total: int) -> list[int]:
    """Whole numbers adding up to ``total``, each the floor of its quota or one more (largest remainders first,
    ties to the lower group): Hamilton's apportionment."""
    take = [math.floor(q) for q in quotas]
    order = sorted(range(len(quotas)), key=lambda k: (-(quotas[k] - take[k]), k))
    for k in order[: total - sum(take)]:
        take[k] += 1
    return take


def _pick(keys: Tensor, groups: Sequence[Tensor], take: Sequence[int]) -> Tensor:
    """The positions of the ``take[g]`` smallest ``keys`` inside each boolean group ``g``, in stored order."""
    chosen = torch.zeros(keys.shape[0], dtype=torch.bool)
    for g, t in zip(groups, take, strict=True):
        pos = g.nonzero().flatten()
        chosen[pos[torch.argsort(keys[pos], stable=True)[:t]]] = True
    return chosen.nonzero().flatten()


@dataclass
class ImageData:
    """An image classification set held in memory.

    Attributes:
        x: images, float ``(N, C, H, W)`` with values inside ``bounds``.
        y: labels, ``long`` ``(N,)`` in ``0 .. num_classes - 1``.
        classes: class names; ``classes[k]`` is the name of label ``k``.
        bounds: the data range ``(low, high)``.
        name: the set's name and split, e.g. ``"mnist/test"``.
        indices: position of each sample in the original set (defaults to ``0 .. N-1``).
        mean, std: per-channel statistics customarily used to normalise this set (metadata only: the images are not
            normalised; pass them to :class:`~robustlens.Classifier` when the model expects normalised inputs).
        selection: how this set was taken from a larger one by :meth:`subset` (``None`` for a whole split): the
            method (``"first"``, ``"random"``, ``"stratified"`` or ``"positions"``), the seed, the size and the
            source's name and size. Record it with results so they say which samples they are about.
    """

    x: Tensor
    y: Tensor
    classes: list[str]
    bounds: tuple[float, float] = (0.0, 1.0)
    name: str = ""
    indices: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    selection: dict[str, object] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or self.x.ndim != 4:
            shape = tuple(self.x.shape) if isinstance(self.x, Tensor) else type(self.x).__name__
            raise InputError(f"ImageData.x must be a (N, C, H, W) tensor, got {shape}; add the channel axis with "
                             "x.unsqueeze(1) for grayscale images")
        if not self.x.is_floating_point():
            raise InputError(f"ImageData.x must be a float tensor in the data range, got {self.x.dtype}; "
                             "convert integer pixels with x.float() / 255")
        self.y = torch.as_tensor(self.y)
        if self.y.ndim != 1 or self.y.shape[0] != self.x.shape[0]:
            raise LabelError(f"ImageData.y must have one label per image ({self.x.shape[0]}), got shape "
                             f"{tuple(self.y.shape)}")
        if self.y.is_floating_point() or self.y.dtype == torch.bool:
            raise LabelError(f"ImageData.y must hold integer labels, got {self.y.dtype}; use y.long()")
        self.y = self.y.long()
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= len(self.classes)):
            raise LabelError(f"labels must lie in 0..{len(self.classes) - 1} (one per class name), got "
                             f"{int(self.y.min())}..{int(self.y.max())}")
        if self.indices.numel() == 0 and len(self.y):
            self.indices = torch.arange(len(self.y))
        if self.indices.shape != self.y.shape:
            raise ConfigError(f"ImageData.indices must have one entry per image, got {tuple(self.indices.shape)}")
        self.bounds = (float(self.bounds[0]), float(self.bounds[1]))

    # ----------------------------------------------------------------------------------------------- metadata
    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]

    def __repr__(self) -> str:
        return (f"ImageData(name={self.name!r}, n={len(self)}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes}, bounds={self.bounds})")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(C, H, W)``."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of ``classes``)."""
        return len(self.classes)

    def class_counts(self) -> list[int]:
        """Number of samples of each class, in label order."""
        return torch.bincount(self.y, minlength=self.num_classes).tolist()

    # ----------------------------------------------------------------------------------------------- views
    def _select(self, idx: Tensor, name: str | None = None, selection: dict[str, object] | None = None
                ) -> ImageData:
        return ImageData(self.x[idx], self.y[idx], list(self.classes), self.bounds, name or self.name,
                         self.indices[idx], self.mean, self.std, selection)

    def _keys(self, seed: int, stream: str) -> Tensor:
        """A fixed pseudo-random key per sample from ``seed`` and its original index (platform independent)."""
        return torch.from_numpy(_mix64(self.indices.numpy(), stable_hash(seed, stream)).view(np.int64))

    def subset(self, n_or_indices: int | Sequence[int] | Tensor, seed: int | None = None,
               stratified: bool = False) -> ImageData:
        """A subset of the samples, with the choice recorded in :attr:`selection`.

        - ``subset(n, seed=s, stratified=True)``: ``n`` samples drawn per class in proportion to the class counts
          (largest remainders; every class whose share is at least ``1/n`` is represented), the samples of each class
          chosen by ``seed`` and their original indices (the same on every machine, whatever the sample order);
        - ``subset(n, seed=s)``: ``n`` samples drawn uniformly without replacement;
        - ``subset(n)``: the first ``n`` samples in stored order. Several sets are stored sorted by class
          (``mnist-embedded`` holds its 0s first), so this is a biased sample: prefer one of the two above;
        - ``subset(positions)``: the samples at the given positions (a sequence, an index tensor or a mask).

        A stratified subset keeps the stored order, a random one the drawn order. ``seed`` defaults to 0 for a
        stratified subset.

        Example::

            test = load_dataset("mnist-embedded", "test")
            sub = test.subset(100, seed=0, stratified=True)   # 10 of each digit
            sub.selection   # {'method': 'stratified', 'n': 100, 'seed': 0, 'of': 'mnist-embedded/test', ...}
        """
        if isinstance(n_or_indices, int) and not isinstance(n_or_indices, bool):
            n = n_or_indices
            if not 0 <= n <= len(self):
                raise ConfigError(f"subset size must be in 0..{len(self)}, got {n}")
            if stratified:
                s = 0 if seed is None else int(seed)
                groups = [self.y == k for k in range(self.num_classes)]
                take = _apportion([n * int(g.sum()) / max(len(self), 1) for g in groups], n)
                idx = _pick(self._keys(s, "subset-stratified"), groups, take)
                return self._select(idx, selection=self._record("stratified", n, s))
            if seed is None:
                return self._select(torch.arange(n), selection=self._record("first", n, None))
            idx = torch.randperm(len(self), generator=generator(seed, "subset", self.name))[:n]
            return self._select(idx, selection=self._record("random", n, int(seed)))
        idx = torch.as_tensor(n_or_indices)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise ConfigError(f"a boolean subset mask needs {len(self)} entries, got {tuple(idx.shape)}")
            idx = idx.nonzero().flatten()
        idx = idx.long().flatten()
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise ConfigError(f"subset positions must lie in 0..{len(self) - 1}")
        return self._select(idx, selection=self._record("positions", int(idx.numel()), None))

    def _record(self, method: str, n: int, seed: int | None) -> dict[str, object]:
        out: dict[str, object] = {"method": method, "n": n, "seed": seed, "of": self.name, "of_size": len(self)}
        if self.selection is not None:
            out["after"] = self.selection
        return out

    def split(self, test: float | int = 0.2, seed: int = 0, stratify: bool = True) -> tuple[ImageData, ImageData]:
        """Split into ``(train, test)`` parts, stratified by class by default.

        ``test`` is a fraction (``0 < test < 1``) or a number of test samples. The assignment depends only on
        ``seed`` and each sample's original index (through a stable hash), so it is the same on every machine,
        Python, NumPy and PyTorch version, and it does not depend on the order of the samples.
        """
        n = len(self)
        frac = float(test) / n if isinstance(test, int) and not isinstance(test, bool) else float(test)
        if not 0.0 < frac < 1.0:
            raise ConfigError(f"test must be a fraction in (0, 1) or a count in 1..{n - 1}, got {test}")
        groups = [self.y == k for k in range(self.num_classes)] if stratify else [torch.ones(n, dtype=torch.bool)]
        # Largest-remainder apportionment so the class shares add up to exactly ``round(frac * n)`` test samples.
        take = _apportion([frac * int(g.sum()) for g in groups], round(frac * n))
        is_test = torch.zeros(n, dtype=torch.bool)
        is_test[_pick(self._keys(seed, "split"), groups, take)] = True
        base = self.name.split("/")[0]
        return (self._select(torch.nonzero(~is_test).flatten(), f"{base}/train"),
                self._select(torch.nonzero(is_test).flatten(), f"{base}/test"))

    def to(self, device: torch.device | str) -> ImageData:
        """A copy with images and labels on ``device``."""
        return ImageData(self.x.to(device), self.y.to(device), list(self.classes), self.bounds, self.name,
                         self.indices, self.mean, self.std, self.selection)

    # ----------------------------------------------------------------------------------------------- use
    def loader(self, batch_size: int = 128, shuffle: bool = False, seed: int = 0,
               drop_last: bool = False, with_indices: bool = False) -> BatchLoader:
        """An iterable over ``(x, y)`` batches (``(x, y, indices)`` with ``with_indices``).

        Batches are slices of the in-memory tensors (no per-sample collation). With ``shuffle`` the order of epoch
        ``e`` (the ``e``-th iteration over the loader) is a permutation drawn from ``(seed, e)``, so two loaders
        with the same seed give the same batches.
        """
        return BatchLoader(self, batch_size, shuffle, seed, drop_last, with_indices)

    def classifier(self, model: nn.Module, **kwargs: object) -> Classifier:
        """Wrap ``model`` in a :class:`~robustlens.Classifier` with this set's bounds and input shape."""
        from ..classifier import Classifier

        kw: dict[str, object] = {"input_shape": self.input_shape, "num_classes": self.num_classes}
        kw.update(kwargs)
        return Classifier(model, bounds=self.bounds, **kw)  # type: ignore[arg-type]


class BatchLoader:
    """Batches of an :class:`ImageData` (what :meth:`ImageData.loader` returns); ``len()`` is the number of batches."""

    def __init__(self, data: ImageData, batch_size: int, shuffle: bool, seed: int, drop_last: bool,
                 with_indices: bool) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.data = data
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.with_indices = with_indices
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.data)
        if self.shuffle:
            order = torch.randperm(n, generator=generator(self.seed, "loader", self.epoch))
        else:
            order = torch.arange(n)
        self.epoch += 1
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.shuffle:
                batch: tuple[Tensor, ...] = (self.data.x[idx], self.data.y[idx])
                extra = self.data.indices[idx]
            else:
                sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
                batch = (self.data.x[sl], self.data.y[sl])
                extra = self.data.indices[sl]
            yield (*batch, extra) if self.with_indices else batch
