"""Margins inside subspaces: the distance to the decision boundary along a band of frequencies (paper eq. 18, Fig. 8).

Eq. (18) measures, for a collection of subspaces ``S_1, ..., S_S`` of the input space, the minimal L2 perturbation
``r*_{2,S_i}(x) = argmin ||r||_2 s.t. f(x + r) != f(x), r in S_i``; its norm estimates the distance to the boundary
inside ``S_i``. A small margin in ``S_i`` means the network uses discriminative features there; a very large one
means it is invariant to ``S_i`` (Ortiz-Jimenez, Modas, Moosavi-Dezfooli and Frossard, "Hold me tight! Influence
of discriminative features on deep network boundaries", NeurIPS 2020).

This module builds the subspaces and measures the margins:

- :func:`dct_matrix`, :func:`dct2`, :func:`idct2`: the orthonormal 2-D DCT-II (equal to
  ``scipy.fft.dctn(x, norm="ortho")`` on the last two axes), applied per channel;
- :func:`dct_basis`, :func:`diagonal_dct_subspaces`: ``K x K`` blocks of DCT frequencies sliding along the diagonal
  from low to high frequency (the subspaces of Fig. 8), the block taken in every channel (or one);
- :func:`pixel_block_subspaces`: ``K x K`` pixel patches; :func:`random_subspaces`: uniformly random subspaces;
- :func:`subspace_margins`: DeepFool restricted to each subspace (:class:`~robustlens.attacks.subspace.SubspaceAttack`,
  L2, no clipping as in eq. 18) over a dataset through the evaluation runner (checkpointed, resumable), with the
  margin distribution per subspace (median and quantiles) and :func:`plot_margin_profile` (Fig. 8).

Cost: one DeepFool run per (sample, subspace); each run costs one forward and ``candidates`` backward passes per
iteration of an unfinished sample, with every sample of a batch attacked together (the floor is
``subspaces x DeepFool passes``, counted in ``result.queries``).

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the face of adversity: Understanding and
improving deep learning through adversarial robustness", Proc. IEEE 2021 (Sec. III-A, eq. 18, Fig. 8).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..analyses import register_analysis
from ..checks import COUNT, NON_NEGATIVE, NON_NEGATIVE_INT, OPTIONAL_COUNT, Pair, checked
from ..classifier import Classifier
from ..errors import ConfigError, InputError
from ..results import Result
from ..seeding import generator
from ._common import require_deterministic

INF = float("inf")


# ---------------------------------------------------------------------------------------------------- the DCT
@checked(n=COUNT)
def dct_matrix(n: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """The orthonormal DCT-II matrix ``C`` (``n x n``): ``C[k, j] = a_k cos(pi (2j + 1) k / (2n))``,
    ``a_0 = sqrt(1/n)``, ``a_k = sqrt(2/n)``. ``C @ v`` is ``scipy.fft.dct(v, norm="ortho")`` and ``C^T = C^{-1}``."""
    if n < 1:
        raise ConfigError(f"the DCT size must be >= 1, got {n}")
    k = torch.arange(n, dtype=torch.float64)[:, None]
    j = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * j + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] = math.sqrt(1.0 / n)
    return c.to(dtype=dtype, device=device)


def dct2(x: Tensor) -> Tensor:
    """Orthonormal 2-D DCT-II over the last two axes (each channel separately): ``C_H X C_W^T``."""
    ch = dct_matrix(x.shape[-2], dtype=x.dtype, device=x.device)
    cw = dct_matrix(x.shape[-1], dtype=x.dtype, device=x.device)
    return ch @ x @ cw.T


def idct2(y: Tensor) -> Tensor:
    """Inverse of :func:`dct2`: ``C_H^T Y C_W``."""
    ch = dct_matrix(y.shape[-2], dtype=y.dtype, device=y.device)
    cw = dct_matrix(y.shape[-1], dtype=y.dtype, device=y.device)
    return ch.T @ y @ cw


def _image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return (1, *shape)  # type: ignore[return-value]
    if len(shape) != 3:
        raise ConfigError(
            f"DCT and pixel-block subspaces need image inputs of shape (C, H, W) or (H, W), got {shape}; "
            "use random_subspaces or give your own orthonormal basis for other inputs"
        )
    return shape  # type: ignore[return-value]


def _channels(c: int, channels: int | Sequence[int] | None) -> list[int]:
    if channels is None:
        return list(range(c))
    chans = [int(channels)] if isinstance(channels, int) else [int(i) for i in channels]
    if not chans or any(i < 0 or i >= c for i in chans):
        raise ConfigError(f"channels must be indices in [0, {c}), got {channels}")
    return chans


def dct_basis(
    shape: Sequence[int],
    rows: Sequence[int],
    cols: Sequence[int],
    *,
    channels: int | Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Orthonormal basis ``(D, k)`` of the DCT frequencies ``rows x cols`` in the given channels (all by default).

    Column ``(c, u, v)`` is the image whose 2-D DCT (orthonormal, per channel) is the unit coefficient at ``(u, v)``
    in channel ``c``: ``outer(C_H[u], C_W[v])`` placed in channel ``c``. Inputs are flattened in C, H, W order.
    """
    c, h, w = _image_shape(shape)
    chans = _channels(c, channels)
    rows, cols = [int(r) for r in rows], [int(v) for v in cols]
    if not rows or not cols or min(rows) < 0 or max(rows) >= h or min(cols) < 0 or max(cols) >= w:
        raise ConfigError(f"DCT frequencies must lie in [0, {h}) x [0, {w}), got rows {rows} and cols {cols}")
    ch, cw = dct_matrix(h), dct_matrix(w)
    patterns = torch.einsum("ui,vj->uvij", ch[rows], cw[cols]).reshape(len(rows) * len(cols), h * w)
    basis = torch.zeros(len(chans) * patterns.shape[0], c, h * w, dtype=torch.float64)
    for i, ci in enumerate(chans):
        basis[i * patterns.shape[0]:(i + 1) * patterns.shape[0], ci] = patterns
    return basis.reshape(basis.shape[0], c * h * w).T.contiguous().to(dtype)


@dataclass(frozen=True)
class DCTBlock:
    """The DCT frequencies ``rows x cols`` in ``channels`` of images of ``shape`` ``(C, H, W)``: the structure of a
    :func:`dct_basis`, from which the projection onto its span is separable (see :meth:`projector`)."""

    shape: tuple[int, int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    channels: tuple[int, ...]

    def projector(self, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Any:
        """The orthogonal projection onto the span of the block, on flattened samples ``(N, D) -> (N, D)``.

        Equal to ``B B^T`` for ``B = dct_basis(shape, rows, cols, channels=channels)`` but computed per channel as
        ``P_H X P_W`` with the ``H x H`` and ``W x W`` projectors ``P_H = C_H[rows]^T C_H[rows]`` and
        ``P_W = C_W[cols]^T C_W[cols]`` (``C`` the orthonormal DCT matrices): ``O(H W (H + W))`` per channel instead
        of ``O(D k)`` with a dense ``D x k`` basis.
        """
        c, h, w = self.shape
        ch = dct_matrix(h)[list(self.rows)]
        cw = dct_matrix(w)[list(self.cols)]
        ph = (ch.T @ ch).to(dtype=dtype, device=device)
        pw = (cw.T @ cw).to(dtype=dtype, device=device)
        mask = None
        if len(self.channels) != c:
            mask = torch.zeros(c, 1, 1, dtype=dtype, device=device)
            mask[list(self.channels)] = 1.0

        def project(flat: Tensor) -> Tensor:
            y = ph @ flat.reshape(-1, c, h, w) @ pw
            if mask is not None:
                y = y * mask
            return y.reshape(flat.shape)

        return project


@dataclass
class Subspace:
    """A named subspace ``span(basis)`` of the input space.

    Attributes:
        name: a label (``"dct[4:8]"``, ``"pixel(0,7)"``, ``"random3"``).
        basis: ``(D, k)`` orthonormal columns (inputs flattened in C, H, W order).
        position: where the subspace sits on a profile's x axis (the diagonal DCT block's first frequency index,
            the patch index, or the draw index).
        kind: ``"dct"``, ``"pixel"``, ``"random"`` or ``"custom"``.
        dct: for a block of DCT frequencies (:func:`diagonal_dct_subspaces`), its rows, columns and channels; the
            margins then project with the separable :meth:`DCTBlock.projector` instead of the dense ``basis``.
    """

    name: str
    basis: Tensor
    position: float = 0.0
    kind: str = "custom"
    dct: DCTBlock | None = None

    @property
    def dim(self) -> int:
        return int(self.basis.shape[1])

    def projector(self, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Any:
        """A fast form of the projection ``B B^T`` on flattened samples, or ``None`` when only the dense basis is
        known."""
        return None if self.dct is None else self.dct.projector(dtype=dtype, device=device)


def _starts(n: int, size: int, stride: int) -> list[int]:
    if size < 1 or size > n:
        raise ConfigError(f"block size must be between 1 and {n}, got {size}")
    if stride < 1:
        raise ConfigError(f"stride must be >= 1, got {stride}")
    out = list(range(0, n - size + 1, stride))
    if out[-1] != n - size:  # always reach the highest frequencies / the last pixels
        out.append(n - size)
    return out


@checked(block=COUNT, stride=OPTIONAL_COUNT)
def diagonal_dct_subspaces(
    shape: Sequence[int],
    block: int = 8,
    stride: int | None = None,
    *,
    channels: int | Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[Subspace]:
    """``K x K`` blocks of DCT frequencies on the diagonal, from low to high frequency (paper Fig. 8).

    Block ``t`` holds frequencies ``[a_t, a_t + K) x [b_t, b_t + K)`` with ``a_t`` sliding by ``stride`` (default
    ``K // 2``) from 0 to ``H - K`` (the last block always ends at the highest frequency); for non-square images
    ``b_t`` follows proportionally up to ``W - K``. Each subspace contains the block in every channel (or only in
    ``channels``), so its dimension is ``channels x K^2``.
    """
    c, h, w = _image_shape(shape)
    k = int(block)
    if k > min(h, w):
        raise ConfigError(f"block {k} is larger than the image ({h} x {w}); choose block <= {min(h, w)}")
    starts = _starts(h, k, int(stride) if stride is not None else max(1, k // 2))
    out = []
    for a in starts:
        b = a if h == w else int(round(a * (w - k) / max(1, h - k)))
        basis = dct_basis((c, h, w), range(a, a + k), range(b, b + k), channels=channels, dtype=dtype)
        blk = DCTBlock((c, h, w), tuple(range(a, a + k)), tuple(range(b, b + k)), tuple(_channels(c, channels)))
        out.append(Subspace(name=f"dct[{a}:{a + k}]", basis=basis, position=float(a), kind="dct", dct=blk))
    return out


@checked(block=COUNT, stride=OPTIONAL_COUNT)
def pixel_block_subspaces(
    shape: Sequence[int],
    block: int = 8,
    stride: int | None = None,
    *,
    channels: int | Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> list[Subspace]:
    """``K x K`` pixel patches on a grid (stride ``K`` by default), each in every channel (or only ``channels``),
    in raster order; ``position`` is the patch index."""
    c, h, w = _image_shape(shape)
    chans = _channels(c, channels)
    k = int(block)
    if k > min(h, w):
        raise ConfigError(f"block {k} is larger than the image ({h} x {w}); choose block <= {min(h, w)}")
    s = int(stride) if stride is not None else k
    out: list[Subspace] = []
    for r in _starts(h, k, s):
        for q in _starts(w, k, s):
            idx = torch.arange(c * h * w).view(c, h, w)[chans, r:r + k, q:q + k].flatten()
            basis = torch.zeros(c * h * w, idx.numel(), dtype=dtype)
            basis[idx, torch.arange(idx.numel())] = 1.0
            out.append(Subspace(name=f"pixel({r},{q})", basis=basis, position=float(len(out)), kind="pixel"))
    return out


@checked(k=COUNT, n=COUNT)
def random_subspaces(
    dim: int | Sequence[int], k: int, n: int = 1, *, seed: int = 0, dtype: torch.dtype = torch.float32
) -> list[Subspace]:
    """``n`` uniformly random ``k``-dimensional subspaces of ``R^D`` (QR of a seeded Gaussian matrix)."""
    d = int(np.prod(dim)) if not isinstance(dim, int) else int(dim)
    if not 1 <= k <= d:
        raise ConfigError(f"k must be between 1 and D = {d}, got {k}")
    out = []
    for i in range(n):
        g = generator(seed, "random-subspace", i)
        q = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64)).Q
        out.append(Subspace(name=f"random{i}", basis=q.to(dtype), position=float(i), kind="random"))
    return out


# ---------------------------------------------------------------------------------------------------- margins
def margin_quantiles(margins: Tensor, qs: Sequence[float], mask: Tensor | None = None) -> Tensor:
    """Quantiles ``(len(qs), S)`` of the columns of ``margins`` ``(N, S)`` over the rows in ``mask``.

    Uses the inverse empirical CDF (an actual sample value, no interpolation), so infinite margins (DeepFool did
    not reach the boundary: the model is invariant to that subspace within ``max_iter`` steps) are handled.
    """
    m = margins if mask is None else margins[mask]
    if m.shape[0] == 0:
        return torch.full((len(qs), margins.shape[1]), float("nan"), dtype=torch.float64)
    arr = m.double().cpu().numpy()
    return torch.from_numpy(np.quantile(arr, list(qs), axis=0, method="inverted_cdf"))


@dataclass
class SubspaceMarginResult(Result):
    """Margins (norms of the minimal L2 perturbations inside each subspace, eq. 18), per sample and subspace.

    Attributes:
        margins: ``(N, S)``; ``inf`` where DeepFool did not change the decision within ``max_iter`` steps,
            0 where the clean input is already misclassified, ``nan`` (with a warning) where DeepFool stopped on a
            NaN or Inf gradient or logit (the margin is unknown).
        names, positions, kinds, dims: per subspace.
        labels, clean_correct, indices: per sample.
        median, q_low, q_high: ``(S,)`` median and the ``quantiles`` of the margins over correctly classified
            samples (inverse empirical CDF).
        quantiles: the ``(low, high)`` levels of ``q_low`` / ``q_high``.
        queries: forward and backward passes computed by this call (batches resumed from ``state_dir`` excluded).
        seed, settings: the run's seed and DeepFool settings.
    """

    margins: Tensor
    names: list[str]
    positions: list[float]
    kinds: list[str]
    dims: list[int]
    labels: Tensor
    clean_correct: Tensor
    indices: Tensor
    median: Tensor
    q_low: Tensor
    q_high: Tensor
    quantiles: tuple[float, float] = (0.25, 0.75)
    queries: dict[str, int] = field(default_factory=dict)
    seed: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    def quantile(self, q: float | Sequence[float], *, only_correct: bool = True) -> Tensor:
        """Margin quantile(s) per subspace (``(S,)``, or ``(len(q), S)`` for several)."""
        qs = [float(q)] if isinstance(q, (int, float)) else [float(v) for v in q]
        out = margin_quantiles(self.margins, qs, self.clean_correct.bool() if only_correct else None)
        return out[0] if isinstance(q, (int, float)) else out


def _as_subspaces(subspaces: Sequence[Subspace] | Mapping[str, Tensor] | Tensor) -> list[Subspace]:
    if isinstance(subspaces, Tensor):
        return [Subspace(name="subspace0", basis=subspaces)]
    if isinstance(subspaces, Mapping):
        return [Subspace(name=str(k), basis=v, position=float(i)) for i, (k, v) in enumerate(subspaces.items())]
    out = list(subspaces)
    if not out or not all(isinstance(s, Subspace) for s in out):
        raise ConfigError(
            "subspaces must be a non-empty list of Subspace (e.g. diagonal_dct_subspaces(shape)), a dict "
            "name -> (D, k) basis, or one (D, k) basis"
        )
    return out


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> SubspaceMarginResult:
    spaces = diagonal_dct_subspaces(tuple(x.shape[1:]), block=2, stride=2)[:2]
    return subspace_margins(clf, (x, y), spaces, max_iter=10, batch_size=max(1, x.shape[0] // 2), seed=seed,
                            progress=False)


@register_analysis("subspace-margins", kind="geometry", smoke=_smoke,
                   summary="the margin inside each subspace, e.g. DCT bands (eq. 18, Fig. 8)")
@checked(overshoot=NON_NEGATIVE, max_iter=COUNT, candidates=OPTIONAL_COUNT, quantiles=Pair(low=0, high=1),
         batch_size=OPTIONAL_COUNT)
def subspace_margins(
    clf: Classifier,
    data: Any,
    subspaces: Sequence[Subspace] | Mapping[str, Tensor] | Tensor,
    *,
    overshoot: float = 0.02,
    max_iter: int = 50,
    candidates: int | None = None,
    quantiles: tuple[float, float] = (0.25, 0.75),
    batch_size: int | None = None,
    seed: int = 0,
    indices: Tensor | Sequence[int] | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> SubspaceMarginResult:
    """The margin of every sample inside every subspace (paper eq. 18, Fig. 8), by DeepFool restricted to it.

    For each subspace ``S = span(B)`` DeepFool (L2, no clipping, as eq. 18 has no box constraint) runs through
    :class:`~robustlens.attacks.subspace.SubspaceAttack`: every gradient it sees is ``B B^T grad`` and the returned
    perturbation lies in ``S``. The margin is the perturbation's L2 norm (``1 + overshoot`` times the distance
    DeepFool reached). Keep a small positive overshoot: with ``overshoot=0`` DeepFool can stop exactly on the boundary
    of a locally linear model, where rounding decides the class and the sample may be reported as not fooled.

    Args:
        clf: the classifier.
        data: ``(x, y)``, ``x`` alone (the predictions are used), a dict or a dataset (see
            :func:`robustlens.runner.run_evaluation`).
        subspaces: a list of :class:`Subspace` (:func:`diagonal_dct_subspaces`, :func:`pixel_block_subspaces`,
            :func:`random_subspaces`), a dict ``name -> (D, k)`` basis, or one basis.
        overshoot, max_iter, candidates: DeepFool's settings (``candidates=None``: all other classes).
        quantiles: the ``(low, high)`` quantile levels summarised beside the median.
        batch_size: samples attacked together (and checkpointed together with ``state_dir``; default
            ``clf.batch_size``); the margins do not depend on it.
        seed: the run's seed (DeepFool draws nothing; recorded for the fingerprint).
        indices, state_dir, resume, overwrite, progress: as in :func:`~robustlens.runner.run_evaluation`.

    Returns:
        A :class:`SubspaceMarginResult`; ``result.median`` is the thick line of Fig. 8.
    """
    from ..attacks.base import Criterion
    from ..attacks.deepfool import DeepFool
    from ..attacks.subspace import SubspaceAttack
    from ..decision import clean_validity, decide
    from ..runner import run_evaluation, tensor_hash
    from ..seeding import SampleRNG

    require_deterministic(clf, "subspace_margins")
    subs = _as_subspaces(subspaces)
    if not 0.0 <= quantiles[0] <= quantiles[1] <= 1.0:
        raise ConfigError(f"quantiles must be (low, high) levels in [0, 1], got {quantiles}")
    inner = DeepFool(norm=2, overshoot=overshoot, max_iter=max_iter, candidates=candidates, clip=False)
    attacks = [
        SubspaceAttack(inner, s.basis.to(clf.device, clf.dtype), projector=s.projector(dtype=clf.dtype,
                                                                                        device=clf.device))
        for s in subs
    ]
    queries = {"forward": 0, "backward": 0}

    def fn(bx: Tensor, by: Tensor | None, bi: Tensor) -> dict[str, Tensor]:
        bx = bx.to(clf.device)
        by = None if by is None else by.to(clf.device)
        d = bx[0].numel()
        if subs[0].basis.shape[0] != d:
            raise InputError(
                f"the subspaces have D = {subs[0].basis.shape[0]} rows but inputs have {d} values per sample; "
                "build them for the input shape (e.g. diagonal_dct_subspaces(x.shape[1:]))"
            )
        # what SubspaceAttack.__call__ does for each subspace, with the clean forward pass shared by all of them
        x, y_checked = clf.validate(bx, by)
        x = x.detach().clone()
        start = clf.counter.snapshot()
        cols = []
        with clf.analysis_mode():
            with torch.no_grad():
                clean = clf.forward(x)
            clean_validity(clean, owner="subspace_margins")
            labels = clean.argmax(1) if y_checked is None else y_checked
            criterion = Criterion(labels)
            correct = clean.argmax(1) == labels
            for atk in attacks:
                adv = atk.run(clf, x, criterion, SampleRNG(seed, bi, n=x.shape[0])).detach()
                dec = decide(clf, x, adv, criterion, p=2, bounds=False, clean_logits=clean)
                dec.warn("subspace_margins")
                # a stopped sample (NaN or Inf gradient) has an unknown margin, not an infinite one
                norm = torch.where(dec.stopped | dec.nonfinite_logits, torch.full_like(dec.norm, math.nan), dec.norm)
                cols.append(torch.where(correct, norm, torch.zeros_like(norm)))
        fwd, bwd = clf.counter.snapshot()
        queries["forward"] += fwd - start[0]
        queries["backward"] += bwd - start[1]
        return {"margins": torch.stack(cols, 1), "labels": labels, "clean_correct": correct}

    config = {
        "analysis": "subspace_margins",
        "deepfool": inner.settings,
        "subspaces": [(s.name, s.dim, tensor_hash(s.basis)) for s in subs],
    }
    ev = run_evaluation(fn, data, state_dir=state_dir, batch_size=batch_size or clf.batch_size, config=config,
                        seed=seed, model=clf, indices=indices, resume=resume, overwrite=overwrite, progress=progress,
                        desc="subspace margins")
    margins = ev["margins"].double()
    correct = ev["clean_correct"].bool()
    qs = margin_quantiles(margins, [0.5, quantiles[0], quantiles[1]], correct)
    return SubspaceMarginResult(
        margins=margins, names=[s.name for s in subs], positions=[s.position for s in subs],
        kinds=[s.kind for s in subs], dims=[s.dim for s in subs], labels=ev["labels"], clean_correct=correct,
        indices=ev.indices, median=qs[0], q_low=qs[1], q_high=qs[2], quantiles=(quantiles[0], quantiles[1]),
        queries=queries, seed=seed, settings=inner.settings,
    )


@checked(max_points=NON_NEGATIVE_INT)
def plot_margin_profile(
    results: SubspaceMarginResult | Mapping[str, SubspaceMarginResult],
    ax: Any = None,
    *,
    points: bool = True,
    max_points: int = 200,
    logy: bool = False,
) -> Any:
    """Fig. 8: the margin distribution per subspace from low to high frequency, one panel line per result.

    The thick line is the median over correctly classified samples, the band spans ``q_low``..``q_high``, and
    (``points=True``) the margins of up to ``max_points`` samples are drawn as faint dots. Infinite margins are
    drawn at the top of the axis. Returns the axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    items = {"": results} if isinstance(results, SubspaceMarginResult) else dict(results)
    finite_max = 0.0
    for res in items.values():
        m = res.margins[res.clean_correct.bool()]
        fin = m[torch.isfinite(m)]
        if fin.numel():
            finite_max = max(finite_max, float(fin.max()))
    top = finite_max * 1.05 if finite_max > 0 else 1.0
    for i, (name, res) in enumerate(items.items()):
        color = f"C{i}"
        xs = np.asarray(res.positions, dtype=float)
        med = res.median.clamp_max(top).numpy()
        ax.plot(xs, med, "-", lw=2.5, color=color, label=name or "median")
        ax.fill_between(xs, res.q_low.clamp_max(top).numpy(), res.q_high.clamp_max(top).numpy(), color=color,
                        alpha=0.2, lw=0)
        if points:
            m = res.margins[res.clean_correct.bool()][:max_points].clamp_max(top)
            jitter = (np.random.default_rng(0).random(m.shape) - 0.5) * 0.3 * (np.diff(xs).min() if xs.size > 1 else 1)
            ax.scatter((xs[None, :] + jitter).ravel(), m.numpy().ravel(), s=3, alpha=0.15, color=color, lw=0)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("subspace (low -> high frequency)")
    ax.set_ylabel("margin ||r*_S||_2")
    first = next(iter(items.values()))
    if len(first.names) <= 16:
        ax.set_xticks(first.positions)
        ax.set_xticklabels(first.names, rotation=45, ha="right", fontsize=7)
    if any(items):
        ax.legend()
    return ax


__all__ = [
    "DCTBlock",
    "Subspace",
    "SubspaceMarginResult",
    "dct2",
    "dct_basis",
    "dct_matrix",
    "diagonal_dct_subspaces",
    "idct2",
    "margin_quantiles",
    "pixel_block_subspaces",
    "plot_margin_profile",
    "random_subspaces",
    "subspace_margins",
]
