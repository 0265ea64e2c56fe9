"""Curvature of the input loss landscape (paper eq. 15-16, Fig. 4a).

The input Hessian ``nabla_x^2 l(x)`` of the loss ``l(x) = L(x, y)`` is never formed for real inputs: its extreme
eigenpairs come from Lanczos iterations (ARPACK through :func:`scipy.sparse.linalg.eigsh` on a
:class:`~scipy.sparse.linalg.LinearOperator`) whose matrix-vector products are exact Hessian-vector products
(forward-over-reverse, ``torch.func``). Several samples are solved at once: one ``eigsh`` per sample runs in its
own thread, and their Hessian-vector requests are gathered into a single ``vmap``-ed call, so a batch of samples
costs one batched HVP per Lanczos step rather than one per sample. A dense path (``torch.func.jacfwd`` of the
gradient) gives the full spectrum for small inputs.

References: Moosavi-Dezfooli, Fawzi, Uesato, Frossard, "Robustness via curvature regularization, and vice
versa", CVPR 2019 (curvature profile, Fig. 4a); Fawzi, Moosavi-Dezfooli, Frossard, Soatto, "Empirical study of the
topology and geometry of deep networks", CVPR 2018; Pearlmutter, "Fast exact multiplication by the Hessian", 1994.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..classifier import Classifier
from ..errors import ConfigError
from ..results import Result
from ..seeding import generator
from ._common import LossSpec, hvp_fn, per_sample_loss, prepare


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


class _Lockstep:
    """Serve the matrix-vector requests of several ARPACK solvers (one per thread) as one batched call."""

    def __init__(self, n: int, batch_fn: Callable[[list[int], np.ndarray], np.ndarray]) -> None:
        self.cond = threading.Condition()
        self.pending: dict[int, np.ndarray] = {}
        self.results: dict[int, np.ndarray] = {}
        self.alive = n
        self.batch_fn = batch_fn
        self.calls = 0
        self.vectors = 0
        self.error: BaseException | None = None

    def matvec(self, i: int, v: np.ndarray) -> np.ndarray:
        with self.cond:
            if self.error is not None:
                raise RuntimeError("another solver failed") from self.error
            self.pending[i] = np.asarray(v, dtype=np.float64).reshape(-1)
            self.cond.notify_all()
            while i not in self.results:
                if self.error is not None:
                    raise RuntimeError("the batched Hessian-vector product failed") from self.error
                self.cond.wait()
            return self.results.pop(i)

    def done(self) -> None:
        with self.cond:
            self.alive -= 1
            self.cond.notify_all()

    def serve(self, bar: Any = None) -> None:
        while True:
            with self.cond:
                while self.alive > 0 and len(self.pending) < self.alive:
                    self.cond.wait()
                if self.alive == 0 and not self.pending:
                    return
                batch = dict(self.pending)
                self.pending.clear()
            idx = sorted(batch)
            try:
                out = self.batch_fn(idx, np.stack([batch[i] for i in idx]))
            except BaseException as e:  # wake the solvers, then re-raise here
                with self.cond:
                    self.error = e
                    self.cond.notify_all()
                raise
            self.calls += 1
            self.vectors += len(idx)
            if bar is not None:
                bar.update(1)
            with self.cond:
                for j, i in enumerate(idx):
                    self.results[i] = out[j]
                self.cond.notify_all()


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


def _in_range(
    project: Callable[[Tensor, Tensor], Tensor], vals: Tensor, vecs: Tensor, shape: torch.Size
) -> tuple[Tensor, Tensor]:
    """Keep the eigenpairs (ascending ``vals (N, D)``, column ``vecs (N, D, D)``) whose vectors lie in the range
    of the projection (``||P v|| > 1/2``); every sample must keep the same number."""
    n, d = vals.shape
    owner = torch.arange(n, device=vals.device).repeat_interleave(d)
    pv = project(vecs.transpose(1, 2).reshape(n * d, *shape), owner).reshape(n, d, d)
    keep = pv.norm(dim=2) > 0.5
    counts = keep.sum(1)
    if bool((counts != counts[0]).any()):
        raise ConfigError("the projection's rank differs between samples; project each sample separately")
    m = int(counts[0])
    vals = vals[keep].view(n, m)
    vecs = vecs.transpose(1, 2)[keep].view(n, m, d).transpose(1, 2)
    return vals, vecs


def input_hessian(clf: Classifier, x: Tensor, y: Tensor | None = None, *, loss: LossSpec = "ce") -> Tensor:
    """The dense input Hessian ``(N, D, D)`` of the loss (eq. 16), for small inputs only (D HVPs per sample)."""
    x, y = prepare(clf, x, y)
    return _dense_hessian(clf, x, y, loss, batch=max(1, 4096 // max(1, x[0].numel())))


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
    batch_size: int = 32,
    progress: bool = True,
    project: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> HessianSpectrum:
    """Top-``k`` and/or bottom-``k`` eigenpairs of the input Hessian of the loss, per sample (Fig. 4a, eq. 16).

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
        batch_size: samples whose Lanczos iterations run together (their HVPs share one vmapped call).
        project: optional symmetric projection ``project(v, idx) -> P_i v`` (``v`` of shape ``(m, *input_shape)``,
            ``idx`` the ``(m,)`` sample indices into ``x``): the eigenpairs are then those of ``P_i H_i P_i``. It is
            applied before and after every HVP (and to the dense Hessian's rows and columns) and to the Lanczos
            start vector, so the Krylov space stays in the range of ``P_i`` and the zero eigenvalues of the
            projected-out directions do not appear on the Lanczos path (they do in the dense ``full_values``).

    The HVP count is recorded in ``result.hvps``; the cost is that count times the cost of one HVP.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    if which not in ("top", "bottom", "both"):
        raise ConfigError(f"which must be 'top', 'bottom' or 'both', got {which!r}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    x, y = prepare(clf, x, y)
    n, shape, d = x.shape[0], x.shape[1:], x[0].numel()
    loss_name = loss if isinstance(loss, str) else getattr(loss, "__name__", "callable")
    if method == "auto":
        method = "dense" if d <= 128 else "lanczos"
    kt = k if which in ("top", "both") else 0
    kb = k if which in ("bottom", "both") else 0
    settings = {"k": k, "which": which, "tol": tol, "ncv": ncv, "seed": seed}
    if method == "dense":
        h = _dense_hessian(clf, x, y, loss, batch=max(1, min(batch_size, 4096 // max(1, d))))
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
    if method != "lanczos":
        raise ConfigError(f"method must be 'lanczos', 'dense' or 'auto', got {method!r}")
    ktot = kt + kb
    # with a projection, one spare eigenpair per end replaces a projected-out direction ARPACK may still return
    extra = 0 if project is None else int(kt > 0) + int(kb > 0)
    if ktot >= d:
        raise ConfigError(
            f"Lanczos needs fewer than D = {d} eigenpairs (asked {ktot}); use method='dense' for small inputs"
        )
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
                return out.reshape(len(idx), d).double().cpu().numpy()

            lock = _Lockstep(len(idx0), batch_fn)
            answers: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            errors: list[BaseException] = []

            def solve(
                j: int, lock: _Lockstep = lock, answers: dict = answers, errors: list = errors, start: int = start
            ) -> None:
                try:
                    g = generator(seed, "lanczos-start", start + j)
                    v0t = torch.rand(d, generator=g, dtype=torch.float64) - 0.5
                    if project is not None:
                        owner = torch.tensor([start + j], device=x.device)
                        v0t = project(v0t.to(x.dtype).to(x.device).view(1, *shape), owner).reshape(d).double().cpu()
                    v0 = v0t.numpy()
                    op = LinearOperator((d, d), matvec=lambda v: lock.matvec(j, v), dtype=np.float64)
                    answers[j] = eigsh(op, k=min(ktot + extra, d - 1), which=arpack_which, v0=v0, tol=tol, ncv=ncv)
                except BaseException as e:  # reported in the calling thread
                    errors.append(e)
                finally:
                    lock.done()

            threads = [threading.Thread(target=solve, args=(j,), daemon=True) for j in range(len(idx0))]
            for t in threads:
                t.start()
            try:
                lock.serve(bar)
            finally:
                for t in threads:
                    t.join()
            if errors:
                raise errors[0]
            total_vectors += lock.vectors
            for j, i in enumerate(idx0):
                vals, vecs = answers[j]
                if project is not None:
                    vt = torch.from_numpy(vecs.T.copy()).to(x.dtype).to(x.device)
                    pn = project(vt.view(-1, *shape), torch.full((vt.shape[0],), i, device=x.device))
                    keep = (pn.reshape(vt.shape[0], -1).norm(dim=1) > 0.5).cpu().numpy()
                    vals, vecs = vals[keep], vecs[:, keep]
                    if vals.shape[0] < ktot:
                        raise RuntimeError(f"sample {i}: Lanczos returned too few eigenpairs in the projected space")
                    order = np.argsort(vals)
                    vals, vecs = vals[order], vecs[:, order]
                    if kb and kt:  # the kb smallest and the kt largest
                        vals = np.concatenate([vals[:kb], vals[vals.shape[0] - kt :]])
                        vecs = np.concatenate([vecs[:, :kb], vecs[:, vecs.shape[1] - kt :]], 1)
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


@dataclass
class BoundaryCurvature(Result):
    """Principal curvatures of the decision boundary near each input (see :func:`boundary_curvature`).

    Attributes:
        top_values: ``(N, k_top)`` largest principal curvatures, descending (``nan`` where the attack failed).
        bottom_values: ``(N, k_bottom)`` smallest principal curvatures, ascending.
        boundary_points: ``(N, *input_shape)`` the points ``x_b = x + r*(x)`` where the curvature is taken.
        distance: ``(N,)`` ``||x_b - x||_2`` (``inf`` where the attack failed).
        gradient_norm: ``(N,)`` ``||grad f(x_b)||`` of the differentiated function.
        success: ``(N,)`` whether the attack crossed the boundary.
        labels: the labels ``y``; boundary_labels: the decision at ``x_b``.
        function: ``"ce"`` or ``"logit-difference"``; hvps: Hessian-vector products used.

    Sign: a positive curvature bends the boundary around the region of ``y`` (the region is locally convex in
    that direction, as for a ball around ``x``); a negative one bends it away.
    """

    top_values: Tensor
    bottom_values: Tensor
    boundary_points: Tensor
    distance: Tensor
    gradient_norm: Tensor
    success: Tensor
    labels: Tensor
    boundary_labels: Tensor
    function: str
    hvps: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def max_abs(self) -> Tensor:
        """``(N,)`` the largest principal curvature in magnitude among those computed (``nan`` where failed)."""
        vals = torch.cat([self.top_values, self.bottom_values], 1).abs()
        return vals.amax(1) if vals.shape[1] else torch.full_like(self.distance, math.nan)

    @property
    def median(self) -> float:
        """Median of :attr:`max_abs` over the samples the attack crossed (``nan`` when none)."""
        v = self.max_abs[self.success]
        return float(v.median()) if v.numel() else math.nan


def boundary_curvature(
    clf: Classifier,
    x: Tensor,
    y: Tensor | None = None,
    *,
    k: int = 5,
    which: str = "both",
    function: str = "ce",
    attack: Any = None,
    overshoot: float = 0.02,
    method: str = "auto",
    tol: float = 1e-3,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> BoundaryCurvature:
    """Principal curvatures of the decision boundary near ``x``: the shape operator of a level set at ``x_b``.

    1. ``x_b = x + r*(x)``: the minimal L2 perturbation, by DeepFool (L2, eq. 9) with a small ``overshoot``
       (``attack`` replaces it: any minimal-norm attack called as ``attack(clf, x, y)``).
    2. ``f`` is the function differentiated at ``x_b`` (``function``), ``g = grad f(x_b)``, ``n = g / ||g||`` and
       ``P = I - n n^T`` the projection onto the tangent space of the level set ``{f = f(x_b)}``.
    3. The principal curvatures of that level set are the eigenvalues of the shape operator
       ``kappa = P H P / ||g||`` (``H`` the input Hessian of ``f`` at ``x_b``) on the tangent space: the top and/or
       bottom ``k`` (``which``; by algebraic value, as :func:`hessian_eigenpairs`), from Lanczos on projected HVPs
       (``project`` hook of :func:`hessian_eigenpairs`) or the dense Hessian for ``D <= 128``.
       :attr:`BoundaryCurvature.max_abs` is the largest one in magnitude per sample.

    The level-set curvature does not change when ``f`` is replaced by an increasing function of it, so the
    choice of ``f`` only matters through which level set passes through ``x_b``:

    - ``"logit-difference"``: ``f = max_{j != y} z_j - z_y`` (the margin loss), which at ``x_b`` is
      ``z_t - z_y`` (``t`` the decision at ``x_b``): its zero set is the decision boundary itself. For a ReLU
      network the logits are piecewise linear, so this Hessian is zero almost everywhere and so is this
      curvature (the boundary's curvature sits in its kinks, which a Hessian does not see); use it for smooth
      models.
    - ``"ce"`` (default): ``f`` the cross-entropy loss of ``y``. Near the boundary the softmax is not saturated,
      and the loss's level set through ``x_b`` is the decision boundary smoothed by the softmax. For a ReLU network
      ``H = J^T (diag(p) - p p^T) J`` (``J`` the logit Jacobian): its two-class part lies along the normal and is
      projected out, so what remains is how the other classes' logits bend the level set (it is ``>= 0``: the
      level set bends around the region of ``y``). For two classes the level sets of the loss are those of the
      logit difference, so both choices agree; for more classes even an affine classifier has curved loss level
      sets (its boundary is flat: use ``"logit-difference"`` there).

    Samples the attack does not fool get ``nan`` curvatures and ``inf`` distance.

    Returns:
        :class:`BoundaryCurvature`.
    """
    if function not in ("ce", "logit-difference"):
        raise ConfigError(f"function must be 'ce' or 'logit-difference', got {function!r}")
    if overshoot < 0:
        raise ConfigError(f"overshoot must be >= 0, got {overshoot}")
    from ..attacks.deepfool import DeepFool
    from ._common import grad_fn

    x, y = prepare(clf, x, y)
    n = x.shape[0]
    if attack is None:
        attack = DeepFool(norm=2, overshoot=overshoot, max_iter=50)
    res = attack(clf, x, y)
    ok = res.success.to(x.device)
    xb = res.adversarial.to(x).detach()
    with torch.no_grad():
        zb = clf.predict(xb)
    loss: LossSpec = "ce" if function == "ce" else "margin"
    with clf.analysis_mode():
        g = grad_fn(clf, loss)(xb, y).flatten(1)
    gnorm = g.norm(dim=1)
    kt = k if which in ("top", "both") else 0
    kb = k if which in ("bottom", "both") else 0
    top = torch.full((n, kt), math.nan, dtype=torch.float64)
    bot = torch.full((n, kb), math.nan, dtype=torch.float64)
    hvps = 0
    sel = (ok & (gnorm > 0)).nonzero().flatten()
    if sel.numel():
        normals = (g[sel] / gnorm[sel, None]).detach()

        def project(v: Tensor, idx: Tensor) -> Tensor:
            vf = v.reshape(v.shape[0], -1)
            nn_ = normals[idx].to(vf)
            return (vf - (vf * nn_).sum(1, keepdim=True) * nn_).view_as(v)

        spec = hessian_eigenpairs(
            clf, xb[sel], y[sel], k=k, which=which, loss=loss, method=method, tol=tol, return_vectors=False,
            seed=seed, batch_size=batch_size, progress=progress, project=project,
        )
        scale = gnorm[sel].double().cpu()[:, None]
        top[sel.cpu()] = spec.top_values.double() / scale
        bot[sel.cpu()] = spec.bottom_values.double() / scale
        hvps = spec.hvps
    dist = torch.where(ok, (xb - x).flatten(1).norm(dim=1), torch.full_like(gnorm, math.inf))
    return BoundaryCurvature(
        top_values=top, bottom_values=bot, boundary_points=xb.cpu(), distance=dist.detach().cpu(),
        gradient_norm=gnorm.detach().cpu(), success=ok.cpu(), labels=y.cpu(), boundary_labels=zb.cpu(),
        function=function, hvps=hvps,
        settings={"k": k, "which": which, "overshoot": overshoot, "method": method, "tol": tol, "seed": seed,
                  "attack": getattr(attack, "name", type(attack).__name__)},
    )


def curvature_profile(spectrum: HessianSpectrum) -> Tensor:
    """The sorted eigenvalues per sample, descending (Fig. 4a): the full spectrum on the dense path, otherwise
    the top eigenvalues followed by the bottom ones (the middle of the spectrum is not computed)."""
    if spectrum.full_values is not None:
        return spectrum.full_values
    return torch.cat([spectrum.top_values, spectrum.bottom_values.flip(1)], 1)


@dataclass
class AlignmentResult(Result):
    """Cosine between the minimal L2 perturbation ``r*(x)`` and the loss gradient, per sample (Sec. II-C)."""

    cosine: Tensor
    perturbation_norm: Tensor
    gradient_norm: Tensor

    @property
    def median(self) -> float:
        return float(self.cosine.median())


def gradient_alignment(
    clf: Classifier,
    x: Tensor,
    y: Tensor | None = None,
    perturbation: Tensor | None = None,
    *,
    loss: LossSpec = "ce",
) -> AlignmentResult:
    """``cos(r*(x), nabla_x l(x))`` per sample: near 1 when the network is locally almost linear (Sec. II-C).

    ``perturbation`` is the minimal L2 perturbation; when omitted it is computed by DeepFool (L2, eq. 9;
    Moosavi-Dezfooli et al., CVPR 2016). Samples DeepFool does not fool get ``nan``.
    """
    x, y = prepare(clf, x, y)
    if perturbation is None:
        from ..attacks.deepfool import DeepFool

        res = DeepFool(norm=2)(clf, x, y)
        perturbation = torch.where(
            res.success.view(-1, *([1] * (x.ndim - 1))), res.perturbation, torch.full_like(x, float("nan"))
        )
    _, g = clf.loss_and_input_grad(x, y, loss=loss, validate=False)
    r = perturbation.to(x).flatten(1)
    gf = g.flatten(1)
    rn, gn = r.norm(dim=1), gf.norm(dim=1)
    cos = (r * gf).sum(1) / (rn * gn).clamp_min(1e-30)
    return AlignmentResult(cosine=cos.cpu(), perturbation_norm=rn.cpu(), gradient_norm=gn.cpu())


@dataclass
class TaylorResult(Result):
    """How well the first- and second-order models of eq. (16) predict ``l(x + r)``.

    Attributes:
        loss_clean, loss_perturbed: ``l(x)`` and ``l(x + r)``.
        first_order: ``l(x) + r^T g``; second_order: ``first_order + r^T H r / 2``.
        first_error, second_error: absolute errors of the two models; ``*_relative`` divide by
            ``|l(x + r) - l(x)|`` (the change the models try to predict).
    """

    loss_clean: Tensor
    loss_perturbed: Tensor
    first_order: Tensor
    second_order: Tensor
    first_error: Tensor
    second_error: Tensor
    first_relative: Tensor
    second_relative: Tensor


def taylor_error(
    clf: Classifier, x: Tensor, y: Tensor | None, r: Tensor, *, loss: LossSpec = "ce"
) -> TaylorResult:
    """Local-linearity error of the second-order model ``l(x+r) ~ l + r^T g + r^T H r / 2`` (eq. 16).

    One gradient, one batched HVP and one forward pass per sample. For a quadratic loss the second-order error
    is zero; a small first-order error means the network is locally almost linear along ``r``.
    """
    x, y = prepare(clf, x, y)
    r = r.detach().to(x)
    if r.shape != x.shape:
        raise ConfigError(f"r must have the inputs' shape {tuple(x.shape)}, got {tuple(r.shape)}")
    l0, g = clf.loss_and_input_grad(x, y, loss=loss, validate=False)
    with clf.analysis_mode():
        hr = hvp_fn(clf, loss)(x, y, r)
        from ..classifier import resolve_loss

        with torch.no_grad():
            l1 = resolve_loss(loss)(clf.forward(x + r), y)
    rf = r.flatten(1)
    lin = l0 + (rf * g.flatten(1)).sum(1)
    quad = lin + 0.5 * (rf * hr.flatten(1)).sum(1)
    e1, e2 = (l1 - lin).abs(), (l1 - quad).abs()
    change = (l1 - l0).abs().clamp_min(1e-30)
    return TaylorResult(
        loss_clean=l0.detach().cpu(), loss_perturbed=l1.cpu(), first_order=lin.detach().cpu(),
        second_order=quad.detach().cpu(), first_error=e1.detach().cpu(), second_error=e2.detach().cpu(),
        first_relative=(e1 / change).detach().cpu(), second_relative=(e2 / change).detach().cpu(),
    )


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


def hvp_cost(clf: Classifier, x: Tensor, y: Tensor | None = None, *, loss: LossSpec = "ce", repeats: int = 3) -> float:
    """Median seconds of one batched HVP call on ``x`` (the unit of the curvature floor in the benchmarks)."""
    import time

    x, y = prepare(clf, x, y)
    hvp = hvp_fn(clf, loss)
    v = torch.randn_like(x)
    times = []
    with clf.analysis_mode():
        hvp(x, y, v)
        for _ in range(repeats):
            t = time.perf_counter()
            hvp(x, y, v)
            times.append(time.perf_counter() - t)
    return float(np.median(times)) if times else math.nan


__all__ = [
    "AlignmentResult",
    "BoundaryCurvature",
    "boundary_curvature",
    "HessianSpectrum",
    "TaylorResult",
    "curvature_profile",
    "gradient_alignment",
    "hessian_eigenpairs",
    "hvp_cost",
    "input_hessian",
    "plot_curvature_profile",
    "taylor_error",
]
