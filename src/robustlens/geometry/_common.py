"""Shared machinery of the geometry analyses: input checks, functional model calls, batched Hessian-vector
products, chunked evaluation of many points and orthonormal direction sets.

Everything here works on flattened inputs internally (``(N, D)``) and returns to the model's input shape only
when calling the model. No module of ``robustlens.geometry`` re-implements these loops.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..classifier import NO_GRADIENT_PATH, Classifier, resolve_loss
from ..errors import ConfigError, InputError, RobustLensError, RobustLensWarning
from ..ops import finite_rows

LossSpec = str | Callable[[Tensor, Tensor], Tensor]


STOCHASTIC = (
    "{owner} reads the model as a fixed function (its decision or its derivatives at many points), but the "
    "classifier is declared stochastic: one random draw per point is not the model's decision, and derivatives of "
    "one draw are not the model's. Analyse a deterministic copy (dropout off, no injected noise), or use an attack "
    "or robust_accuracy, which average over draws"
)


def require_deterministic(clf: Classifier, owner: str) -> None:
    """A :class:`ConfigError` for a classifier declared ``stochastic`` (see :data:`STOCHASTIC`)."""
    if clf.stochastic:
        raise ConfigError(STOCHASTIC.format(owner=owner))


def prepare(clf: Classifier, x: Tensor, y: Tensor | None = None, owner: str = "this geometry analysis"
            ) -> tuple[Tensor, Tensor]:
    """Validate a batch and return it with labels (the model's predictions when ``y`` is omitted); a declared
    stochastic classifier is refused (:func:`require_deterministic`), and so are inputs whose logits are NaN or Inf
    (:meth:`Classifier.predict` raises; derivatives of such a model can still look finite)."""
    require_deterministic(clf, owner)
    x, y = clf.validate(x, None if y is None else torch.as_tensor(y))
    pred = clf.predict(x, validate=False)
    return x.detach(), pred if y is None else y


def prepare_differentiable(clf: Classifier, x: Tensor, y: Tensor | None, owner: str) -> tuple[Tensor, Tensor]:
    """:func:`prepare` for an analysis that differentiates the model through ``torch.func``: a model whose logits
    do not depend differentiably on the input is refused (``torch.func`` would return zero derivatives for it,
    silently)."""
    x, y = prepare(clf, x, y, owner)
    require_gradient_path(clf, x[:1])
    return x, y


def require_gradient_path(clf: Classifier, x: Tensor) -> None:
    """A clear error when the logits at ``x`` do not depend differentiably on ``x`` (one uncounted pass)."""
    with clf.analysis_mode(), torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        z = logits_fn(clf)(xg)
        g = torch.autograd.grad(z.sum(), xg, allow_unused=True)[0] if z.requires_grad else None
    if g is None:
        raise RobustLensError(NO_GRADIENT_PATH)


NONFINITE_GRADIENT = (
    "a non-differentiable operation such as sqrt or log at 0 in the model or its preprocessing, or an overflow. "
    "Fix the model (e.g. sqrt(x + 1e-12)) or drop those samples"
)
NONFINITE_LOGITS = (
    "the model returns NaN or Inf logits there (overflow, or log or division by zero in forward). Fix the model or "
    "choose points where it is finite"
)


def require_finite_rows(
    values: Tensor, owner: str, what: str, samples: Sequence[int] | None = None, *, cause: str = NONFINITE_GRADIENT
) -> None:
    """An :class:`InputError` naming the samples whose row of ``values`` ``(m, ...)`` holds NaN or Inf, and the
    likely ``cause``. ``samples`` are the indices to name for the rows (default ``0..m-1``).
    """
    bad = (~finite_rows(values)).nonzero().flatten().tolist()
    if not bad:
        return
    names = [samples[i] for i in bad] if samples is not None else bad
    shown = ", ".join(str(i) for i in names[:8]) + (", ..." if len(names) > 8 else "")
    raise InputError(
        f"{owner}: {what} is NaN or Inf for {len(names)} sample(s) (index {shown}): {cause}"
    )


def warn_unmeasured(owner: str, mask: Tensor, why: str, value: str = "NaN", stacklevel: int = 3) -> None:
    """One :class:`~robustlens.RobustLensWarning` when ``mask`` marks samples whose result is ``value`` because
    ``why`` (nothing when the mask is empty)."""
    k = int(mask.sum())
    if k:
        warnings.warn(f"{owner}: {why} for {k} of {mask.numel()} samples; their values are {value}",
                      RobustLensWarning, stacklevel=stacklevel)


def single(clf: Classifier, x: Tensor, y: Tensor | int | None = None, owner: str = "this geometry analysis"
           ) -> tuple[Tensor, Tensor]:
    """Accept one input given with or without its batch dimension; return ``(1, *shape)`` and ``(1,)``.

    While the classifier does not know its input shape yet, a 3-d tensor is read as one ``(C, H, W)`` image (so
    ``x[i]`` of an MNIST batch works) and a 2-d or 4-d tensor as a batch; pass ``input_shape=`` to the Classifier
    for other layouts.
    """
    if not isinstance(x, Tensor):
        raise InputError(f"the input must be a torch.Tensor, got {type(x).__name__}")
    if clf.input_shape is not None and tuple(x.shape) == clf.input_shape:
        x = x.unsqueeze(0)
    elif clf.input_shape is None and x.ndim == 3:
        x = x.unsqueeze(0)
    elif x.ndim >= 2 and x.shape[0] != 1:
        raise InputError(
            f"this analysis looks at one input at a time; got a batch of {x.shape[0]}: pass x[i] or x[i:i+1]"
        )
    elif x.ndim < 2:
        x = x.unsqueeze(0)
    yy = None if y is None else torch.as_tensor(y).reshape(1)
    return prepare(clf, x, yy, owner)


def logits_fn(clf: Classifier) -> Callable[[Tensor], Tensor]:
    """The model as a pure function of a data-space batch (normalization included), for ``torch.func``.

    It does not validate or count passes; callers account for the passes they use.
    """

    def f(x: Tensor) -> Tensor:
        return clf.analysis_model(clf._normalize(x))

    return f


def per_sample_loss(clf: Classifier, loss: LossSpec) -> Callable[[Tensor, Tensor], Tensor]:
    """``(x, y) -> scalar loss`` of one unbatched input, suitable for ``torch.func.grad`` / ``vmap``."""
    f = logits_fn(clf)
    if loss == "ce":

        def lfn(x: Tensor, y: Tensor) -> Tensor:
            z = f(x.unsqueeze(0))
            return F.cross_entropy(z, y.reshape(1))

        return lfn
    fn = resolve_loss(loss)

    def lfn2(x: Tensor, y: Tensor) -> Tensor:
        return fn(f(x.unsqueeze(0)), y.reshape(1)).sum()

    return lfn2


def hvp_fn(clf: Classifier, loss: LossSpec = "ce") -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """Batched Hessian-vector products of the input loss landscape ``l(x) = L(x, y)`` (paper eq. 15-16).

    Returns ``hvp(x, y, v)`` with ``x, v`` of shape ``(N, *input_shape)`` and ``y`` of shape ``(N,)``, computing
    ``[nabla_x^2 l(x_i)] v_i`` for all ``i`` in one vectorised call: forward-mode over reverse-mode
    (``torch.func.jvp`` of ``torch.func.grad``), mapped over samples with ``torch.func.vmap``
    (Pearlmutter, 1994, "Fast exact multiplication by the Hessian").
    """
    from torch.func import grad, jvp, vmap

    g = grad(per_sample_loss(clf, loss))

    def one(x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        return jvp(lambda z: g(z, y), (x,), (v,))[1]

    mapped = vmap(one)

    def batched(x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        with torch.no_grad():  # the transforms differentiate inside; no graph to the weights is kept
            return mapped(x, y, v)

    return batched


def grad_fn(clf: Classifier, loss: LossSpec = "ce") -> Callable[[Tensor, Tensor], Tensor]:
    """Batched input gradients ``nabla_x l(x_i)`` as a pure function (``vmap`` of ``torch.func.grad``)."""
    from torch.func import grad, vmap

    mapped = vmap(grad(per_sample_loss(clf, loss)))

    def batched(x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            return mapped(x, y)

    return batched


def chunks(n: int, size: int) -> Iterator[slice]:
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def evaluate_points(
    clf: Classifier,
    make: Callable[[slice], Tensor],
    n: int,
    reduce: Callable[[Tensor, slice], Any],
    *,
    batch_size: int | None = None,
    progress: bool = False,
    desc: str = "points",
) -> None:
    """Run the model without gradients on ``n`` points built chunk by chunk by ``make(slice)``.

    ``reduce(logits, slice)`` consumes each chunk's logits (so that huge grids never sit in memory).
    Passes are counted in ``clf.counter``.
    """
    bs = batch_size or clf.batch_size
    with torch.no_grad(), clf.analysis_mode():
        for s in tqdm(list(chunks(n, bs)), desc=desc, disable=not progress, leave=False):
            reduce(clf.forward(make(s)), s)


def unit(v: Tensor) -> Tensor:
    """Rows of ``v`` (any trailing shape) scaled to unit L2 norm."""
    flat = v.flatten(1)
    return (flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)).view_as(v)


def orthonormalize(vectors: Tensor) -> Tensor:
    """Gram-Schmidt (by QR) of the rows of ``vectors`` ``(k, D)``, keeping each row's orientation.

    Raises :class:`ConfigError` when the rows are linearly dependent.
    """
    q, r = torch.linalg.qr(vectors.T)
    d = torch.diagonal(r)
    scale = vectors.norm(dim=1).clamp_min(1e-30)
    if bool((d.abs() < 1e-6 * scale).any()):
        raise ConfigError(
            "the directions are linearly dependent (e.g. the adversarial and gradient directions coincide); "
            "choose different directions"
        )
    return (q * d.sign()).T.contiguous()


def ray_boundary_distance(
    clf: Classifier,
    x: Tensor,
    labels: Tensor,
    dirs: Tensor,
    max_dist: float | Tensor,
    *,
    n_grid: int = 32,
    geometric: bool = True,
    rtol: float = 1e-4,
    max_bisect: int = 40,
    batch_size: int | None = None,
    progress: bool = False,
    brackets: tuple[Tensor, Tensor] | None = None,
    per_round: int = 1,
) -> tuple[Tensor, int]:
    """Distance from ``x_i`` along each unit ray ``dirs[i, m]`` to the first point classified other than ``y_i``.

    A point whose logits are NaN or Inf does not count as a crossing (a warning says how many there were).
    A batched line search (paper eq. 20, one-sided): the rays are scanned on a grid of ``n_grid`` steps up to
    ``max_dist`` (geometric from ``max_dist / 1000``, or uniform), a ray leaves the scan as soon as it crosses,
    then all crossed rays are bisected together until the bracket is below ``rtol`` relative width. Rays that do
    not cross within ``max_dist`` get ``inf``. A decision region thinner than one grid step can be missed.

    Args:
        x: ``(N, *shape)`` inputs; labels: ``(N,)`` the decision to leave; dirs: ``(N, M, *shape)`` unit rays.
        max_dist: scan length (a scalar or one value per sample).
        brackets: ``(lo, hi)`` of shape ``(N * M,)`` known already (``hi = inf``: no crossing): no scan.
        per_round: points per bracket and round of the refinement, in one call: 1 bisects; more cut each bracket
            into ``per_round + 1`` parts, fewer and larger calls for the same precision.

    Returns:
        ``(N, M)`` distances and the number of forward passes used.
    """
    n, m = dirs.shape[0], dirs.shape[1]
    shape = x.shape[1:]
    xf = x.flatten(1)
    df = dirs.reshape(n * m, -1)
    owner = torch.arange(n, device=x.device).repeat_interleave(m)
    lab = labels[owner]
    md = torch.as_tensor(max_dist, dtype=x.dtype, device=x.device).expand(n)[owner].clone()
    if geometric:
        frac = torch.logspace(-3, 0, n_grid, dtype=x.dtype, device=x.device)
    else:
        frac = torch.linspace(1.0 / n_grid, 1.0, n_grid, dtype=x.dtype, device=x.device)
    lo = torch.zeros(n * m, dtype=x.dtype, device=x.device)
    hi = torch.full((n * m,), float("inf"), dtype=x.dtype, device=x.device)
    active = torch.arange(n * m, device=x.device)
    passes = 0
    nonfinite = [0]

    def crossed(idx: Tensor, alpha: Tensor) -> Tensor:
        out = torch.empty(idx.shape[0], dtype=torch.bool, device=x.device)

        def make(s: slice) -> Tensor:
            r = idx[s]
            return (xf[owner[r]] + alpha[s, None] * df[r]).view(-1, *shape)

        def red(z: Tensor, s: slice) -> None:
            fin = finite_rows(z)
            nonfinite[0] += int((~fin).sum())
            out[s] = fin & (z.argmax(1) != lab[idx[s]])

        evaluate_points(clf, make, idx.shape[0], red, batch_size=batch_size)
        return out

    if brackets is not None:
        lo, hi = (t.to(device=x.device, dtype=x.dtype).clone() for t in brackets)
        active = active[:0]
    prev = torch.zeros(n * m, dtype=x.dtype, device=x.device)
    for g in tqdm(range(n_grid), desc="line search", disable=not progress, leave=False):
        if active.numel() == 0:
            break
        alpha = frac[g] * md[active]
        c = crossed(active, alpha)
        passes += active.numel()
        done = active[c]
        lo[done] = prev[active][c]
        hi[done] = alpha[c]
        prev[active] = alpha
        active = active[~c]
    frac_r = torch.arange(1, per_round + 1, dtype=x.dtype, device=x.device) / (per_round + 1)
    br = torch.isfinite(hi).nonzero().flatten()
    for _ in range(max_bisect):
        if br.numel() == 0:
            break
        wide = (hi[br] - lo[br]) > rtol * hi[br]
        br = br[wide]
        if br.numel() == 0:
            break
        pts = lo[br, None] + (hi[br] - lo[br])[:, None] * frac_r  # (k, per_round), increasing along each ray
        hit = crossed(br.repeat_interleave(per_round), pts.reshape(-1)).view(pts.shape)
        passes += hit.numel()
        any_hit, first = hit.any(1), hit.to(torch.uint8).argmax(1)
        rows = torch.arange(br.numel(), device=x.device)
        below = torch.where(first > 0, pts[rows, (first - 1).clamp_min(0)], lo[br])
        lo[br] = torch.where(any_hit, below, pts[:, -1])
        hi[br] = torch.where(any_hit, pts[rows, first], hi[br])
    if nonfinite[0]:
        warnings.warn(f"the model returned NaN or Inf logits at {nonfinite[0]} point(s) of the line search to the "
                      f"boundary; they count as not crossing it. {NONFINITE_LOGITS}", RobustLensWarning, stacklevel=3)
    return hi.view(n, m), passes
