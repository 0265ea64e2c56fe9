"""Extreme eigenpairs of the input Hessian of the loss: the curvature profile (paper eq. 15-16, Fig. 4a).

The input Hessian ``nabla_x^2 l(x)`` of the loss ``l(x) = L(x, y)`` is never formed for real inputs: its extreme
eigenpairs come from Lanczos iterations (ARPACK through :func:`scipy.sparse.linalg.eigsh` on a
:class:`~scipy.sparse.linalg.LinearOperator`) whose matrix-vector products are exact Hessian-vector products
(forward-over-reverse, ``torch.func``). Several samples are solved at once: one ``eigsh`` per sample runs in its
own thread, and their Hessian-vector requests are gathered into a single ``vmap``-ed call
(:mod:`robustlens.geometry._lockstep`), so a batch of samples costs one batched HVP per Lanczos step rather than
one per sample. A dense path (``torch.func.jacfwd`` of the gradient) gives the full spectrum for small inputs.

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the face of adversity: Understanding and
improving deep learning through adversarial robustness", Proc. IEEE 2021 (Sec. II-D, eq. 15-16, Fig. 4a).
Original methods: Moosavi-Dezfooli, Fawzi, Uesato, Frossard, "Robustness via curvature regularization, and vice
versa", CVPR 2019 (the curvature profile); Pearlmutter, "Fast exact multiplication by the Hessian", Neural
Computation 1994 (Hessian-vector products); Lanczos, 1950, as implemented by ARPACK (Lehoucq, Sorensen, Yang, 1998).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..analyses import register_analysis
from ..checks import COUNT, NON_NEGATIVE, OPTIONAL_COUNT, Number, checked
from ..classifier import Classifier
from ..errors import ConfigError, InputError
from ..results import Result
from ..seeding import generator
from ._common import LossSpec, hvp_fn, per_sample_loss, prepare_differentiable, require_finite_rows
from ._lockstep import run_lockstep


@dataclass
class HessianSpectrum(Result):
    """Extreme eigenpairs of the input Hessian of the loss, per sample.

    Attributes:
        top_values: ``(N, k_top)`` largest eigenvalues, descending.
        bottom_values: ``(N, k_bottom)`` smallest eigenvalues, ascending (most negative first).
        top_vectors / bottom_vectors: ``(N, k, *input_shape)`` unit eigenvectors (``None`` unless requested).
        full_values: ``(N, D)`` the whole spectrum, descending (dense path only).
        labels: the labels of the loss.
        method: ``"lanczos"`` or ``"dense"``; loss: the loss name; hvps: Hessian-vector products used.
    """

    top_values: Tensor
    bottom_values: Tensor
    labels: Tensor
    method: str
    loss: str
    hvps: int
    top_vectors: Tensor | None = None
    bottom_vectors: Tensor | None = None
    full_values: Tensor | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def profile(self) -> Tensor:
        """The sorted curvature profile (Fig. 4a): full spectrum if known, else top then bottom, descending."""
        return curvature_profile(self)


def _dense_hessian(clf: Classifier, x: Tensor, y: Tensor, loss: LossSpec, batch: int) -> Tensor:
    from torch.func import grad, jacfwd, vmap

    h = vmap(jacfwd(grad(per_sample_loss(clf, loss))))
    out = []
    with clf.analysis_mode(), torch.no_grad():
        for i in range(0, x.shape[0], batch):
            hi = h(x[i : i + batch], y[i : i + batch])
            d = x[0].numel()
            out.append(hi.reshape(hi.shape[0], d, d))
    return torch.cat(out)


def _in_projection(project: Callable[[Tensor, Tensor], Tensor], vecs: Tensor, owner: Tensor) -> Tensor:
    """Which unit vectors ``vecs`` ``(m, *shape)`` (of samples ``owner``) lie in the range of the projection: an
    eigenvector of ``P H P`` is either in it (``||P v|| = 1``) or in its kernel (``P v = 0``); 1/2 separates them."""
    return project(vecs, owner).flatten(1).norm(dim=1) > 0.5


def _in_range(
    project: Callable[[Tensor, Tensor], Tensor], vals: Tensor, vecs: Tensor, shape: torch.Size
) -> tuple[Tensor, Tensor]:
    """Keep the eigenpairs (ascending ``vals (N, D)``, column ``vecs (N, D, D)``) whose vectors lie in the range
    of the projection (``||P v|| > 1/2``); every sample must keep the same number."""
    n, d = vals.shape
    owner = torch.arange(n, device=vals.device).repeat_interleave(d)
    keep = _in_projection(project, vecs.transpose(1, 2).reshape(n * d, *shape), owner).view(n, d)
    counts = keep.sum(1)
    if bool((counts != counts[0]).any()):
        raise ConfigError("the projection's rank differs between samples; project each sample separately")
    m = int(counts[0])
    vals = vals[keep].view(n, m)
    vecs = vecs.transpose(1, 2)[keep].view(n, m, d).transpose(1, 2)
    return vals, vecs


def _smoke_dense(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> Tensor:
    return input_hessian(clf, x, y)


@register_analysis("input-hessian", kind="geometry", smoke=_smoke_dense,
                   summary="the dense input Hessian of the loss, for small inputs (eq. 16)")
def input_hessian(clf: Classifier, x: Tensor, y: Tensor | None = None, *, loss: LossSpec = "ce") -> Tensor:
    """The dense input Hessian ``(N, D, D)`` of the loss (eq. 16), for small inputs only (D HVPs per sample).

    Computed in chunks of at most ``clf.batch_size`` samples (``torch.func.jacfwd`` of the gradient); a NaN or Inf
    entry is an :class:`~robustlens.InputError` naming the samples.
    """
    x, y = prepare_differentiable(clf, x, y, "input_hessian")
    h = _dense_hessian(clf, x, y, loss, batch=max(1, min(clf.batch_size, 4096 // max(1, x[0].numel()))))
    require_finite_rows(h, "input_hessian", "the input Hessian of the loss")
    return h


def spectrum_ends(k: int, which: str) -> tuple[int, int]:
    """``(k_top, k_bottom)``: how many eigenpairs each end of the spectrum gets for ``which``."""
    if which not in ("top", "bottom", "both"):
        raise ConfigError(f"which must be 'top', 'bottom' or 'both', got {which!r}")
    return (k if which in ("top", "both") else 0), (k if which in ("bottom", "both") else 0)


Projection = Callable[[Tensor, Tensor], Tensor]


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> HessianSpectrum:
    return hessian_eigenpairs(clf, x, y, k=1, method="lanczos", seed=seed, progress=False)


@register_analysis("hessian-eigenpairs", kind="geometry", smoke=_smoke,
                   summary="extreme eigenpairs of the input Hessian of the loss (eq. 16, Fig. 4a)")
@checked(k=COUNT, tol=NON_NEGATIVE, ncv=OPTIONAL_COUNT, batch_size=OPTIONAL_COUNT)
def hessian_eigenpairs(
    clf: Classifier,
    x: Tensor,
    y: Tensor | None = None,
    *,
    k: int = 20,
    which: str = "both",
    loss: LossSpec = "ce",
    method: str = "auto",
    tol: float = 0.0,
    ncv: int | None = None,
    return_vectors: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
    project: Projection | None = None,
) -> HessianSpectrum:
    """Top-``k`` and/or bottom-``k`` eigenpairs of the input Hessian of the loss, per sample (Fig. 4a, eq. 16).

    Ortiz-Jimenez et al., "Optimism in the face of adversity", Proc. IEEE 2021, Sec. II-D: adversarial training
    flattens the loss landscape, seen as smaller extreme eigenvalues of ``nabla_x^2 l(x)`` (the curvature profile
    of Moosavi-Dezfooli et al., "Robustness via curvature regularization, and vice versa", CVPR 2019).

    Args:
        clf: the classifier (use smooth activations to see curvature: a ReLU network's logits are piecewise
            linear in the input, so only the softmax contributes to its Hessian).
        x, y: inputs and labels of the loss (default: the predictions).
        k: eigenpairs per end of the spectrum.
        which: ``"top"`` (largest algebraic), ``"bottom"`` (smallest algebraic) or ``"both"``.
        loss: ``"ce"``, ``"margin"`` or a callable ``(logits, y) -> per-sample loss``.
        method: ``"lanczos"`` (HVPs + ARPACK), ``"dense"`` (full Hessian, small D) or ``"auto"`` (dense when
            ``D <= 128``).
        tol: ARPACK's relative accuracy (0 means machine precision).
        ncv: Lanczos basis size (ARPACK's default ``max(2k + 1, 20)`` when omitted).
        return_vectors: keep the eigenvectors in the result.
        seed: seeds each sample's Lanczos start vector (same seed, same numbers).
        batch_size: samples whose Hessian-vector products share one vmapped call (at most 32 and at most
            ``clf.batch_size`` when omitted); the numbers do not depend on it.
        progress: show a progress bar of the batched HVP calls.
        project: optional symmetric projection ``project(v, idx) -> P_i v`` (``v`` of shape ``(m, *input_shape)``,
            ``idx`` the ``(m,)`` sample indices into ``x``): the eigenpairs are then those of ``P_i H_i P_i``. It is
            applied before and after every HVP (and to the dense Hessian's rows and columns) and to the Lanczos
            start vector, so the Krylov space stays in the range of ``P_i`` and the zero eigenvalues of the
            projected-out directions do not appear on the Lanczos path (they do in the dense ``full_values``).

    The HVP count is recorded in ``result.hvps``; the cost is that count times the cost of one HVP. A model whose
    Hessian-vector products are NaN or Inf (a non-differentiable operation such as ``sqrt`` at 0) is an
    :class:`~robustlens.InputError`; so is a loss with no curvature along the Lanczos start vector (a constant
    classifier), which ARPACK cannot iterate on.

    Example:
        >>> import torch
        >>> from robustlens import Classifier
        >>> from robustlens.geometry import hessian_eigenpairs
        >>> net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        >>> _ = torch.manual_seed(0)
        >>> clf = Classifier(net, input_shape=(6,))
        >>> x = torch.rand(4, 6)
        >>> spec = hessian_eigenpairs(clf, x, k=2, method="lanczos", progress=False)
        >>> spec.top_values.shape, spec.bottom_values.shape
        (torch.Size([4, 2]), torch.Size([4, 2]))
        >>> dense = hessian_eigenpairs(clf, x, k=2, method="dense")  # the full spectrum: the same extremes
        >>> bool(torch.allclose(spec.top_values, dense.top_values.double(), atol=1e-5))
        True
    """
    kt, kb = spectrum_ends(k, which)
    x, y = prepare_differentiable(clf, x, y, "hessian_eigenpairs")
    d = x[0].numel()
    loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "callable")
    if method == "auto":
        method = "dense" if d <= 128 else "lanczos"
    settings = {"k": k, "which": which, "tol": tol, "ncv": ncv, "seed": seed}
    bs = min(32, clf.batch_size) if batch_size is None else batch_size
    if method == "dense":
        return _dense_spectrum(clf, x, y, loss, kt, kb, bs, return_vectors, project, loss_name, settings)
    if method != "lanczos":
        raise ConfigError(f"method must be 'lanczos', 'dense' or 'auto', got {method!r}")
    return _lanczos_spectrum(clf, x, y, loss, kt, kb, which, tol, ncv, seed, bs, progress, return_vectors, project,
                             loss_name, settings)


def _dense_spectrum(
    clf: Classifier, x: Tensor, y: Tensor, loss: LossSpec, kt: int, kb: int, batch_size: int, return_vectors: bool,
    project: Projection | None, loss_name: str, settings: dict[str, Any],
) -> HessianSpectrum:
    """The extreme eigenpairs from the full Hessian (``torch.linalg.eigh``), with its whole spectrum."""
    n, shape, d = x.shape[0], x.shape[1:], x[0].numel()
    h = _dense_hessian(clf, x, y, loss, batch=max(1, min(batch_size, 4096 // max(1, d))))
    require_finite_rows(h.reshape(n, -1), "hessian_eigenpairs", "the input Hessian of the loss")
    if project is not None:
        rows = torch.arange(n, device=x.device).repeat_interleave(d)
        for _ in range(2):  # P H, then (P H)^T -> P H P (H and P symmetric)
            h = project(h.reshape(n * d, *shape), rows).reshape(n, d, d).transpose(1, 2)
    h = 0.5 * (h + h.transpose(1, 2))
    vals, vecs = torch.linalg.eigh(h)  # ascending
    if project is not None:  # drop the eigenpairs of the projected-out directions
        vals, vecs = _in_range(project, vals, vecs, shape)
        d = vals.shape[1]
    vals_d, vecs_d = vals.flip(1), vecs.flip(2)
    if kt + kb > d:
        raise ConfigError(f"asked for {kt + kb} eigenpairs of a {d}-dimensional Hessian")
    tv = vecs_d[:, :, :kt].transpose(1, 2).reshape(n, kt, *shape)
    bv = vecs[:, :, :kb].transpose(1, 2).reshape(n, kb, *shape)
    return HessianSpectrum(
        top_values=vals_d[:, :kt].cpu(), bottom_values=vals[:, :kb].cpu(), labels=y.cpu(), method="dense",
        loss=loss_name, hvps=n * d, top_vectors=tv.cpu() if return_vectors else None,
        bottom_vectors=bv.cpu() if return_vectors else None, full_values=vals_d.cpu(), settings=settings,
    )


ZERO_CURVATURE = (
    "{owner}: ARPACK cannot iterate for sample {i}: the Hessian of the loss maps the Lanczos start vector to zero "
    "(the loss does not curve there: a constant classifier, a softmax saturated to 0/1 in float precision, or a "
    "model whose output ignores the input). Its extreme eigenvalues are not measurable this way: check the "
    "model, pass samples where the loss is not saturated, or use method='dense' for small inputs"
)


def _lanczos_spectrum(
    clf: Classifier, x: Tensor, y: Tensor, loss: LossSpec, kt: int, kb: int, which: str, tol: float,
    ncv: int | None, seed: int, batch_size: int, progress: bool, return_vectors: bool, project: Projection | None,
    loss_name: str, settings: dict[str, Any],
) -> HessianSpectrum:
    """The extreme eigenpairs by Lanczos (ARPACK), one solver per sample, their HVPs batched in lockstep."""
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

    n, shape, d = x.shape[0], x.shape[1:], x[0].numel()
    ktot = kt + kb
    # with a projection, one spare eigenpair per end replaces a projected-out direction ARPACK may still return
    extra = 0 if project is None else int(kt > 0) + int(kb > 0)
    if ktot >= d:
        raise ConfigError(
            f"Lanczos needs fewer than D = {d} eigenpairs (asked {ktot}); use method='dense' for small inputs"
        )
    nev = min(ktot + extra, d - 1)
    if ncv is not None and not nev < ncv <= d:
        raise ConfigError(f"hessian_eigenpairs: ncv must be in ({nev}, {d}] (more than the {nev} eigenpairs ARPACK "
                          f"computes, at most D = {d}), got {ncv}")
    arpack_which = {"top": "LA", "bottom": "SA", "both": "BE"}[which]
    hvp = hvp_fn(clf, loss)
    top_v = torch.zeros(n, kt, dtype=torch.float64)
    bot_v = torch.zeros(n, kb, dtype=torch.float64)
    top_u = torch.zeros(n, kt, d, dtype=x.dtype) if return_vectors else None
    bot_u = torch.zeros(n, kb, d, dtype=x.dtype) if return_vectors else None
    total_vectors = 0
    bar = tqdm(desc="Hessian Lanczos (batched HVPs)", disable=not progress, leave=False)
    with clf.analysis_mode():
        for start in range(0, n, batch_size):
            idx0 = list(range(start, min(n, start + batch_size)))
            xs, ys = x[idx0], y[idx0]

            def batch_fn(
                idx: list[int], vecs: np.ndarray, xs: Tensor = xs, ys: Tensor = ys, s0: int = start
            ) -> np.ndarray:
                v = torch.from_numpy(vecs).to(x.dtype).to(x.device).view(len(idx), *shape)
                if project is None:
                    out = hvp(xs[idx], ys[idx], v)
                else:
                    owner = torch.tensor(idx, device=x.device) + s0
                    out = project(hvp(xs[idx], ys[idx], project(v, owner)), owner)
                out = out.reshape(len(idx), d)
                require_finite_rows(out, "hessian_eigenpairs", "the Hessian-vector product of the loss",
                                    [s0 + i for i in idx])
                return out.double().cpu().numpy()

            def solve(
                j: int, matvec: Callable[[np.ndarray], np.ndarray], start: int = start
            ) -> tuple[np.ndarray, np.ndarray]:
                g = generator(seed, "lanczos-start", start + j)
                v0t = torch.rand(d, generator=g, dtype=torch.float64) - 0.5
                if project is not None:
                    owner = torch.tensor([start + j], device=x.device)
                    v0t = project(v0t.to(x.dtype).to(x.device).view(1, *shape), owner).reshape(d).double().cpu()
                op = LinearOperator((d, d), matvec=matvec, dtype=np.float64)
                try:
                    return eigsh(op, k=nev, which=arpack_which, v0=v0t.numpy(), tol=tol,
                                 ncv=ncv)
                except ArpackNoConvergence as e:
                    raise ConfigError(
                        f"hessian_eigenpairs: Lanczos did not converge for sample {start + j} ({e}); raise ncv "
                        f"(now {ncv or 'the default'}), loosen tol (now {tol}) or use method='dense' for small inputs"
                    ) from e
                except ArpackError as e:
                    if "Starting vector is zero" in str(e):
                        raise InputError(ZERO_CURVATURE.format(owner="hessian_eigenpairs", i=start + j)) from e
                    raise

            answers, vectors = run_lockstep(len(idx0), batch_fn, solve, bar)
            total_vectors += vectors
            for j, i in enumerate(idx0):
                vals, vecs = answers[j]
                if project is not None:
                    vals, vecs = _projected_ends(project, vals, vecs, i, kt, kb, x)
                order = np.argsort(vals)  # ascending
                vals, vecs = vals[order], vecs[:, order]
                if kb:
                    bot_v[i] = torch.from_numpy(vals[:kb].copy())
                    if bot_u is not None:
                        bot_u[i] = torch.from_numpy(vecs[:, :kb].T.copy()).to(x.dtype)
                if kt:
                    top_v[i] = torch.from_numpy(vals[::-1][:kt].copy())
                    if top_u is not None:
                        top_u[i] = torch.from_numpy(vecs[:, ::-1][:, :kt].T.copy()).to(x.dtype)
    bar.close()
    return HessianSpectrum(
        top_values=top_v, bottom_values=bot_v, labels=y.cpu(), method="lanczos", loss=loss_name,
        hvps=total_vectors,
        top_vectors=None if top_u is None else top_u.view(n, kt, *shape),
        bottom_vectors=None if bot_u is None else bot_u.view(n, kb, *shape),
        settings=settings,
    )


def _projected_ends(
    project: Projection, vals: np.ndarray, vecs: np.ndarray, i: int, kt: int, kb: int, x: Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Of ARPACK's eigenpairs of sample ``i``, drop those outside the range of the projection and keep the ``kb``
    smallest and ``kt`` largest, ascending."""
    shape = x.shape[1:]
    vt = torch.from_numpy(vecs.T.copy()).to(x.dtype).to(x.device)
    keep = _in_projection(project, vt.view(-1, *shape), torch.full((vt.shape[0],), i, device=x.device)).cpu().numpy()
    vals, vecs = vals[keep], vecs[:, keep]
    if vals.shape[0] < kt + kb:
        raise RuntimeError(f"sample {i}: Lanczos returned too few eigenpairs in the projected space")
    order = np.argsort(vals)
    vals, vecs = vals[order], vecs[:, order]
    if kb and kt:  # the kb smallest and the kt largest
        vals = np.concatenate([vals[:kb], vals[vals.shape[0] - kt :]])
        vecs = np.concatenate([vecs[:, :kb], vecs[:, vecs.shape[1] - kt :]], 1)
    return vals, vecs


def curvature_profile(spectrum: HessianSpectrum) -> Tensor:
    """The sorted eigenvalues per sample, descending (Fig. 4a): the full spectrum on the dense path, otherwise
    the top eigenvalues followed by the bottom ones (the middle of the spectrum is not computed)."""
    if spectrum.full_values is not None:
        return spectrum.full_values
    return torch.cat([spectrum.top_values, spectrum.bottom_values.flip(1)], 1)


@checked(sample=Number(integer=True, low=0, optional=True), dim=OPTIONAL_COUNT)
def plot_curvature_profile(
    spectra: dict[str, HessianSpectrum], ax: Any = None, *, sample: int | None = None, dim: int | None = None
) -> Any:
    """Fig. 4a: the sorted eigenvalues (descending) of each model's input Hessian, one colour per named spectrum.

    Plots the median over samples (``sample=None``) or one sample's profile. A full spectrum (dense path) is drawn
    against its rank 1..D. Top-k and bottom-k eigenvalues (Lanczos) are drawn side by side, top solid and bottom
    dashed, with a gap for the ranks not computed; the ticks name the true ranks (``dim``: the input dimension D,
    to number the bottom ones; otherwise they are written ``D``, ``D-1``, ...). Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ticks: dict[int, str] = {}
    gap = 0  # the x position of the uncomputed middle of the spectrum (0: none)
    for i, (name, spec) in enumerate(spectra.items()):
        prof = curvature_profile(spec).double()
        vals = (prof.median(0).values if sample is None else prof[sample]).numpy()
        kt, kb = spec.top_values.shape[1], spec.bottom_values.shape[1]
        if spec.full_values is not None or kb == 0:
            ax.plot(np.arange(1, vals.shape[0] + 1), vals, ".-" if vals.shape[0] <= 60 else "-", color=f"C{i}",
                    label=name)
            continue
        gap = max(gap, kt + 1)
        ax.plot(np.arange(1, kt + 1), vals[:kt], ".-", color=f"C{i}", label=f"{name} (top {kt})")
        pos = np.arange(kt + 2, kt + 2 + kb)  # one empty slot after the top ranks: the uncomputed middle
        ax.plot(pos, vals[kt:], ".--", color=f"C{i}", label=f"{name} (bottom {kb})")
        ticks.update({1: "1", kt: str(kt)})
        for j, at in ((0, int(pos[0])), (kb - 1, int(pos[-1]))):
            back = kb - 1 - j  # rank D - back
            ticks[at] = (str(dim - back) if dim else ("D" if back == 0 else f"D-{back}"))
    if gap:
        ax.axvline(gap, color="gray", lw=0.8, ls=":")
        ax.set_xticks(sorted(ticks))
        ax.set_xticklabels([ticks[t] for t in sorted(ticks)])
        ax.set_xlabel("eigenvalue rank (top k | bottom k; the middle is not computed)")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("eigenvalue rank")
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.set_ylabel("eigenvalue of the input Hessian")
    ax.legend()
    return ax



__all__ = [
    "HessianSpectrum",
    "curvature_profile",
    "hessian_eigenpairs",
    "input_hessian",
    "plot_curvature_profile",
]
