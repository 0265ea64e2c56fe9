"""Reproducible randomness keyed by (seed, sample index, stream), independent of batching.

Every stochastic entry point takes ``seed``. Random draws for one sample depend only on the seed, the sample's index
in the dataset and a stream key (e.g. ``("init", restart)``), never on the batch size, the shard or the resume point,
so that a resumed or sharded evaluation gives bit-identical results.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def stable_hash(*parts: object) -> int:
    """A 63-bit hash of ``parts`` that is the same in every process and Python version."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (for code outside robustlens that draws from the global generators)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def generator(seed: int, *key: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` seeded from ``(seed, *key)``."""
    g = torch.Generator(device=device)
    g.manual_seed(stable_hash(seed, *key))
    return g


class SampleRNG:
    """Per-sample random streams: draw ``k`` of sample ``i`` depends on ``(seed, indices[i], key)`` only.

    Args:
        seed: the user's seed.
        indices: dataset index of each sample in the batch (defaults to ``0..n-1``).
        n: batch size, if ``indices`` is omitted.
    """

    def __init__(self, seed: int, indices: Tensor | Sequence[int] | None = None, n: int | None = None) -> None:
        if indices is None:
            if n is None:
                raise ValueError("SampleRNG needs indices or n")
            indices = range(n)
        self.seed = int(seed)
        self.indices = [int(i) for i in (indices.tolist() if isinstance(indices, Tensor) else indices)]

    def __len__(self) -> int:
        return len(self.indices)

    def subset(self, mask: Tensor) -> SampleRNG:
        """The streams of the samples selected by a boolean mask or an index tensor."""
        sel = mask.nonzero().flatten().tolist() if mask.dtype == torch.bool else mask.tolist()
        return SampleRNG(self.seed, [self.indices[i] for i in sel])

    def _draw(self, fn: str, shape: Sequence[int], key: tuple[object, ...], **kw: object) -> Tensor:
        out = []
        for idx in self.indices:
            g = generator(self.seed, idx, *key)
            if fn == "randint":
                out.append(torch.randint(int(kw["high"]), tuple(shape), generator=g))  # type: ignore[call-overload]
            else:
                out.append(getattr(torch, fn)(tuple(shape), generator=g))
        if not out:
            return torch.empty(0, *shape)
        return torch.stack(out)

    def randn(self, shape: Sequence[int], key: tuple[object, ...] = ()) -> Tensor:
        """Standard normal draws of shape ``(n, *shape)`` on the CPU."""
        return self._draw("randn", shape, key)

    def rand(self, shape: Sequence[int], key: tuple[object, ...] = ()) -> Tensor:
        """Uniform [0, 1) draws of shape ``(n, *shape)`` on the CPU."""
        return self._draw("rand", shape, key)

    def randint(self, high: int, shape: Sequence[int] = (), key: tuple[object, ...] = ()) -> Tensor:
        """Integer draws in ``[0, high)`` of shape ``(n, *shape)``."""
        return self._draw("randint", shape, key, high=high)
