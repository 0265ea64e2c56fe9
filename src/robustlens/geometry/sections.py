"""Two-dimensional cross-sections of the decision boundary and of the loss landscape (paper eq. 6, Figs. 3, 4b).

``V(a1, a2) = f(x + a1 u1 + a2 u2)`` is evaluated on a grid around one input ``x`` for two orthonormal directions,
in large no-grad batches. The plane can be spanned by random directions, the DeepFool normal (the direction of
the minimal L2 perturbation, Moosavi-Dezfooli et al., CVPR 2016), the loss gradient, the top eigenvectors of the
input Hessian of the loss (Moosavi-Dezfooli et al., "Robustness via curvature regularization, and vice versa",
CVPR 2019) or user-given vectors. Plotting is separate (:func:`plot_section`).

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the face of adversity: Understanding and
improving deep learning through adversarial robustness", Proc. IEEE 2021 (Sec. II-A, eq. 6, Figs. 3 and 4b).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..analyses import register_analysis
from ..checks import OPTIONAL_COUNT, POSITIVE, Number, check, checked
from ..classifier import Classifier, resolve_loss
from ..errors import ConfigError, InputError, RobustLensWarning
from ..ops import finite_rows, logit_margin
from ..results import Result
from ..seeding import generator
from ._common import (
    NONFINITE_GRADIENT,
    NONFINITE_LOGITS,
    LossSpec,
    evaluate_points,
    orthonormalize,
    ray_boundary_distance,
    require_finite_rows,
    single,
)

DirectionSpec = str | Tensor
_NAMED = ("random", "adversarial", "gradient", "curvature")
GRID = Number(integer=True, low=2)
OPTIONAL_FINITE = Number(optional=True)


@dataclass
class SectionResult(Result):
    """A cross-section ``V(a1, a2) = f(x + a1 u1 + a2 u2)`` (eq. 6) and the loss on the same plane.

    Attributes:
        alphas1, alphas2: grid coordinates along ``u1`` (columns) and ``u2`` (rows), in L2 units.
        labels: ``(len(alphas2), len(alphas1))`` predicted class at each grid point (``-1`` where the logits are
            NaN or Inf, with a warning).
        margins: logit margin ``z_c - max_{k != c} z_k`` of the clean decision ``c``; negative past the boundary.
        loss: the loss of label ``label`` at each point (the loss-landscape section, Fig. 4b).
        directions: ``(2, *input_shape)`` the orthonormal ``u1, u2``.
        axis_distance: distance to the boundary along ``+u1, -u1, +u2, -u2`` (``inf`` beyond the grid's extent),
            located by bisection, not read off the grid.
        clean_label: the clean decision ``c``; label: the label of the loss.
        direction_names: how ``u1`` and ``u2`` were chosen.
        forward_passes: model evaluations used.
        evaluated: ``None`` when every grid point was evaluated (``refine="dense"``); with ``refine="adaptive"`` a
            boolean ``(len(alphas2), len(alphas1))`` mask of the points the model was run on. The other points were
            filled from the corners of a grid cell whose evaluated points all share one label: that label, and
            margins and loss interpolated bilinearly from the cell's corners.
    """

    alphas1: Tensor
    alphas2: Tensor
    labels: Tensor
    margins: Tensor
    loss: Tensor
    directions: Tensor
    axis_distance: dict[str, float]
    clean_label: int
    label: int
    direction_names: list[str] = field(default_factory=list)
    forward_passes: int = 0
    evaluated: Tensor | None = None

    @property
    def evaluated_fraction(self) -> float:
        """Fraction of the grid points the model was run on (1.0 for a dense section)."""
        return 1.0 if self.evaluated is None else float(self.evaluated.double().mean())


def _direction(
    spec: DirectionSpec,
    clf: Classifier,
    x: Tensor,
    y: Tensor,
    loss: LossSpec,
    seed: int,
    slot: int,
    cache: dict[str, Any],
) -> tuple[Tensor, str]:
    d = x[0].numel()
    if isinstance(spec, Tensor):
        if spec.numel() != d:
            raise ConfigError(f"a user direction must have {d} entries (the input size), got {spec.numel()}")
        v = spec.detach().to(x).reshape(d)
        if not bool(torch.isfinite(v).all()):
            raise ConfigError("a user direction holds NaN or Inf entries; pass a finite vector")
        return v, "user"
    if spec == "random":
        g = generator(seed, "section-direction", slot)
        return torch.randn(d, generator=g, dtype=x.dtype).to(x.device), "random"
    if spec == "gradient":
        _, grad = clf.loss_and_input_grad(x, y, loss=loss, validate=False)
        require_finite_rows(grad, "cross_section", "the input gradient of the loss (the 'gradient' direction)")
        return grad.reshape(d), "gradient"
    if spec == "adversarial":
        if "adversarial" not in cache:
            from ..attacks.deepfool import DeepFool

            res = DeepFool(norm=2)(clf, x, y, seed=seed)
            if res.stopped is not None and bool(res.stopped.any()):
                raise InputError(
                    "cross_section: DeepFool stopped on a NaN or Inf gradient at this input, so its boundary normal "
                    f"is unknown: {NONFINITE_GRADIENT}"
                )
            if not bool(res.success.all()):
                raise ConfigError(
                    "DeepFool found no adversarial example for this input, so there is no boundary normal; "
                    "use 'gradient' or 'random' directions instead"
                )
            cache["adversarial"] = res.perturbation.reshape(d)
        return cache["adversarial"], "adversarial"
    if spec == "curvature":
        if "curvature" not in cache:
            from .hessian import hessian_eigenpairs

            cache["curvature"] = hessian_eigenpairs(clf, x, y, k=2, which="top", loss=loss, seed=seed, progress=False)
        i = cache.setdefault("curv_next", 0)
        cache["curv_next"] = i + 1
        return cache["curvature"].top_vectors[0, i].reshape(d).to(x), f"curvature-{i + 1}"
    raise ConfigError(f"unknown direction {spec!r}; use one of {_NAMED} or a tensor of the input's size")


def section_directions(
    clf: Classifier,
    x: Tensor,
    y: Tensor | int | None = None,
    directions: Sequence[DirectionSpec] = ("adversarial", "random"),
    *,
    loss: LossSpec = "ce",
    seed: int = 0,
) -> tuple[Tensor, list[str]]:
    """Two orthonormal directions ``(2, *input_shape)`` spanning a cross-section plane at ``x``.

    Each entry of ``directions`` is ``"random"`` (seeded Gaussian), ``"adversarial"`` (the DeepFool L2 normal),
    ``"gradient"`` (the loss gradient), ``"curvature"`` (the next top eigenvector of the input Hessian of the loss)
    or a tensor; the second is orthogonalised against the first (Gram-Schmidt), the first keeps its direction.
    """
    xb, yb = single(clf, x, y, "section_directions")
    u, names, _ = _directions(clf, xb, yb, directions, loss, seed)
    return u, names


def _directions(
    clf: Classifier, xb: Tensor, yb: Tensor, directions: Sequence[DirectionSpec], loss: LossSpec, seed: int
) -> tuple[Tensor, list[str], dict[str, Any]]:
    """:func:`section_directions` on a checked input; also returns the cache (the DeepFool perturbation)."""
    if len(directions) != 2:
        raise ConfigError(f"a cross-section needs exactly two directions, got {len(directions)}")
    cache: dict[str, Any] = {}
    vecs, names = [], []
    for slot, spec in enumerate(directions):
        v, name = _direction(spec, clf, xb, yb, loss, seed, slot, cache)
        vecs.append(v)
        names.append(name)
    u = orthonormalize(torch.stack(vecs))
    return u.view(2, *xb.shape[1:]), names, cache


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> list[SectionResult]:
    return [cross_section(clf, xi, yi, resolution=3, seed=seed, progress=False) for xi, yi in zip(x, y, strict=True)]


@register_analysis("cross-section", kind="geometry", smoke=_smoke,
                   summary="the decision boundary and the loss on a plane through one input (eq. 6, Figs. 3, 4b)")
@checked(coarse=Number(integer=True, low=2), batch_size=OPTIONAL_COUNT)
def cross_section(
    clf: Classifier,
    x: Tensor,
    y: Tensor | int | None = None,
    directions: Sequence[DirectionSpec] | Tensor = ("adversarial", "random"),
    *,
    extent: float | tuple[float, float] | None = None,
    resolution: int | tuple[int, int] = 101,
    loss: LossSpec = "ce",
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = True,
    refine: str = "dense",
    coarse: int = 8,
) -> SectionResult:
    """Evaluate the classifier on the plane ``x + a1 u1 + a2 u2`` (paper eq. 6, Fig. 3; loss section Fig. 4b).

    Args:
        clf: the classifier. x: one input (with or without batch dimension). y: the label of the loss section
            (default: the clean prediction).
        directions: two direction specs (see :func:`section_directions`) or a ``(2, *input_shape)`` tensor of
            orthonormal directions used as given.
        extent: half-width of the grid along each axis in L2 units (one value or ``(e1, e2)``). Default: three
            times the DeepFool distance when an adversarial direction is used, otherwise a quarter of the data
            range times ``sqrt(D)``.
        resolution: grid points per axis (odd values put ``x`` itself on the grid).
        loss: the loss of the landscape section (``"ce"``, ``"margin"`` or a callable).
        seed: seed of the random directions.
        batch_size: points per forward pass (default ``clf.batch_size``).
        refine: ``"dense"`` (default) runs the model on every grid point. ``"adaptive"`` runs it on the coarse
            sub-grid of every ``coarse``-th point (plus the last row and column), then subdivides only the cells
            whose evaluated points disagree on the label (a quadtree: each such cell is cut in four and its new
            corners are evaluated, all cells of one level in one batched call) down to neighbouring grid points.
            A cell whose evaluated points all agree is filled with that label, and its margins and loss are
            interpolated bilinearly from its corners; ``result.evaluated`` marks the points actually evaluated.
            Caveat: a decision region smaller than a coarse cell that touches none of the evaluated points (e.g.
            a small island strictly inside a cell) is missed, so keep ``coarse`` below the smallest feature you
            need to see. The half-axis distances start from the brackets the section's own labels give along
            the axes (odd resolutions; otherwise from a scan at the coarse step, all four rays in one batched
            call), and each bracket is cut into 8 parts per call down to 1e-4 relative width.
        coarse: the coarse step of ``refine="adaptive"`` in grid points (a power of two; 8 by default, so a
            201 x 201 grid starts from 26 x 26 points).

    The grid is built chunk by chunk (``batch_size`` points per forward pass), so a 201 x 201 section of a
    CIFAR-10 model never holds more than one chunk of images in memory. The distances along the four half-axes are
    refined by bisection. Grid points whose logits are NaN or Inf get label ``-1`` (with a warning); a declared
    stochastic classifier is refused.

    Ortiz-Jimenez et al., "Optimism in the face of adversity", Proc. IEEE 2021, eq. (6) and Fig. 3; the sections
    along the DeepFool normal and a random direction follow Fawzi, Moosavi-Dezfooli, Frossard, Soatto, "Empirical
    study of the topology and geometry of deep networks", CVPR 2018.

    Example (a linear model: the boundary on the plane is a straight line, crossed along the adversarial direction
    at the DeepFool distance):
        >>> import torch
        >>> from robustlens import Classifier
        >>> from robustlens.geometry import cross_section
        >>> _ = torch.manual_seed(0)
        >>> clf = Classifier(torch.nn.Linear(10, 3), input_shape=(10,))
        >>> x = torch.rand(10)
        >>> sec = cross_section(clf, x, resolution=21, progress=False)
        >>> sec.labels.shape, sec.direction_names
        (torch.Size([21, 21]), ['adversarial', 'random'])
        >>> int(sec.labels[10, 10]) == sec.clean_label  # x is the centre of the grid
        True
        >>> d = sec.axis_distance["+u1"]  # the extent is three DeepFool distances
        >>> bool(abs(3 * d - float(sec.alphas1[-1])) < 0.1 * float(sec.alphas1[-1]))
        True
    """
    xb, yb = single(clf, x, y, "cross_section")
    start = clf.counter.forward
    cache: dict[str, Any]
    if isinstance(directions, Tensor):
        if directions.shape[0] != 2 or directions[0].numel() != xb[0].numel():
            raise ConfigError(f"directions must have shape (2, *{tuple(xb.shape[1:])}), got {tuple(directions.shape)}")
        u = directions.detach().to(xb).reshape(2, -1)
        gram = u @ u.T
        if not torch.allclose(gram, torch.eye(2, dtype=u.dtype, device=u.device), atol=1e-4):
            raise ConfigError("the given directions must be orthonormal; pass specs to orthonormalise them")
        names = ["user", "user"]
        cache = {}
    else:
        uu, names, cache = _directions(clf, xb, yb, directions, loss, seed)
        u = uu.reshape(2, -1)
    d = u.shape[1]
    r1, r2 = _pair(resolution, "resolution", GRID)
    if refine not in ("dense", "adaptive"):
        raise ConfigError(f"refine must be 'dense' or 'adaptive', got {refine!r}")
    if refine == "adaptive" and (int(coarse) != coarse or coarse < 2 or int(coarse) & (int(coarse) - 1)):
        raise ConfigError(f"coarse must be a power of two >= 2, got {coarse}")
    clean = clf.predict(xb, validate=False)
    c = int(clean[0])
    if extent is None:
        if "adversarial" in cache:  # the DeepFool run that gave the direction gives the distance too
            e = 3.0 * float(cache["adversarial"].norm())
        else:
            lo, hi = clf.bounds
            e = 0.25 * (hi - lo) * math.sqrt(d) if math.isfinite(hi - lo) else 1.0
        extent = (e, e)
    e1, e2 = _pair(extent, "extent", POSITIVE)
    a1 = torch.linspace(-e1, e1, r1, dtype=xb.dtype, device=xb.device)
    a2 = torch.linspace(-e2, e2, r2, dtype=xb.dtype, device=xb.device)
    n = r1 * r2
    lab = torch.empty(n, dtype=torch.long, device=xb.device)
    mar = torch.empty(n, dtype=xb.dtype, device=xb.device)
    lss = torch.empty(n, dtype=xb.dtype, device=xb.device)
    xf = xb.reshape(1, d)
    lfn = resolve_loss(loss)
    nonfinite = [0]

    def evaluate(idx: Tensor, desc: str) -> None:
        """Run the model on the flat grid indices ``idx`` (row-major, ``r2 x r1``) and store the results."""

        def make(s: slice) -> Tensor:
            ij = idx[s]
            coef = torch.stack([a1[ij % r1], a2[ij // r1]], 1)
            return (xf + coef @ u).view(-1, *xb.shape[1:])

        def red(z: Tensor, s: slice) -> None:
            k, ij = z.shape[0], idx[s]
            fin = finite_rows(z)
            nonfinite[0] += int((~fin).sum())
            lab[ij] = torch.where(fin, z.argmax(1), -1)
            mar[ij] = logit_margin(z, clean.expand(k))
            lss[ij] = lfn(z, yb.expand(k))

        evaluate_points(clf, make, idx.shape[0], red, batch_size=batch_size, progress=progress, desc=desc)

    evaluated: Tensor | None = None
    rays = torch.stack([u[0], -u[0], u[1], -u[1]])
    if refine == "dense":
        evaluate(torch.arange(n, device=xb.device), "cross-section")
        dist, _ = ray_boundary_distance(
            clf, xb, clean, rays.view(1, 4, *xb.shape[1:]),
            torch.tensor([e1, e1, e2, e2], dtype=xb.dtype, device=xb.device).max(),
            geometric=False, n_grid=max(r1, r2), batch_size=batch_size,
        )
    else:
        mask = _adaptive_fill(evaluate, lab, mar, lss, r1, r2, int(coarse), xb.device)
        evaluated = torch.from_numpy(mask)
        n_scan = max(2, math.ceil(max(r1, r2) / int(coarse)))
        brackets = _axis_brackets(lab.view(r2, r1), a1, a2, c) if r1 % 2 and r2 % 2 else None
        # few large calls: the brackets read off the section's labels (or one uniform scan), then each bracket cut
        # into 8 parts per call
        dist, _ = ray_boundary_distance(
            clf, xb, clean, rays.view(1, 4, *xb.shape[1:]), max(e1, e2), geometric=False, n_grid=n_scan,
            batch_size=batch_size, brackets=brackets, per_round=7,
        )
    if nonfinite[0]:
        warnings.warn(f"cross_section: the model returned NaN or Inf logits at {nonfinite[0]} grid point(s); their "
                      f"label is -1 and their margin and loss NaN. {NONFINITE_LOGITS}", RobustLensWarning,
                      stacklevel=3)
    lim = [e1, e1, e2, e2]
    axis = {
        k: (float(v) if float(v) <= lim[i] * (1 + 1e-9) else float("inf"))
        for i, (k, v) in enumerate(zip(("+u1", "-u1", "+u2", "-u2"), dist[0].tolist(), strict=True))
    }
    return SectionResult(
        alphas1=a1.cpu(),
        alphas2=a2.cpu(),
        labels=lab.view(r2, r1).cpu(),
        margins=mar.view(r2, r1).cpu(),
        loss=lss.view(r2, r1).cpu(),
        directions=u.view(2, *xb.shape[1:]).cpu(),
        axis_distance=axis,
        clean_label=c,
        label=int(yb[0]),
        direction_names=names,
        forward_passes=clf.counter.forward - start,
        evaluated=evaluated,
    )


def _pair(value: Any, name: str, rule: Number) -> tuple[Any, Any]:
    """One value for both axes, or ``(first, second)``, each checked by ``rule``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigError(f"cross_section: {name} must be one value or a pair (first axis, second axis), got "
                              f"{value!r}")
        return check(value[0], f"{name}[0]", rule, "cross_section"), check(value[1], f"{name}[1]", rule,
                                                                             "cross_section")
    v = check(value, name, rule, "cross_section")
    return v, v


def _axis_brackets(labels: Tensor, a1: Tensor, a2: Tensor, label: int) -> tuple[Tensor, Tensor]:
    """Brackets ``(lo, hi)`` of the first label change along ``+u1, -u1, +u2, -u2`` read off the section's own
    labels (odd resolutions put ``x`` on the grid, so the half-axes are grid lines); ``hi = inf`` where the label
    does not change within the grid."""
    ci, cj = (labels.shape[0] - 1) // 2, (labels.shape[1] - 1) // 2
    lines = [
        (labels[ci, cj:], a1[cj:]), (labels[ci, :cj + 1].flip(0), -a1[:cj + 1].flip(0)),
        (labels[ci:, cj], a2[ci:]), (labels[:ci + 1, cj].flip(0), -a2[:ci + 1].flip(0)),
    ]
    lo, hi = torch.zeros(4, dtype=a1.dtype), torch.full((4,), float("inf"), dtype=a1.dtype)
    for m, (lab, dist) in enumerate(lines):
        change = (lab != label).nonzero().flatten()
        if change.numel():
            k = int(change[0])
            lo[m], hi[m] = dist[k - 1].abs(), dist[k].abs()
    return lo.to(a1.device), hi.to(a1.device)


def _rect_sums(prefix: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Sums over the closed index rectangles ``cells[:, 0]..cells[:, 1]`` (rows) x ``cells[:, 2]..cells[:, 3]``
    (columns) from a zero-padded 2-D prefix sum."""
    i0, i1, j0, j1 = cells.T
    return prefix[i1 + 1, j1 + 1] - prefix[i0, j1 + 1] - prefix[i1 + 1, j0] + prefix[i0, j0]


def _split(cells: np.ndarray) -> np.ndarray:
    """Cut each cell at its midpoints into four (two along an axis only one grid step long)."""
    i0, i1, j0, j1 = cells.T
    si, sj = (i1 - i0) >= 2, (j1 - j0) >= 2
    im = np.where(si, (i0 + i1) // 2, i1)
    jm = np.where(sj, (j0 + j1) // 2, j1)
    parts = [
        np.stack([i0, im, j0, jm], 1),
        np.stack([im, i1, j0, jm], 1)[si],
        np.stack([i0, im, jm, j1], 1)[sj],
        np.stack([im, i1, jm, j1], 1)[si & sj],
    ]
    return np.concatenate(parts)


def _adaptive_fill(
    evaluate: Any, lab: Tensor, mar: Tensor, lss: Tensor, r1: int, r2: int, step: int, device: torch.device
) -> np.ndarray:
    """The quadtree of ``refine="adaptive"`` (see :func:`cross_section`); returns the ``(r2, r1)`` evaluated mask.

    ``evaluate(flat_indices, desc)`` runs the model on grid points and writes ``lab``, ``mar`` and ``lss`` (flat,
    row-major). A cell is uniform when all evaluated points of its closed rectangle share one label (checked
    exactly from prefix sums of the labels and their squares); a uniform cell that a neighbour's refinement later
    contradicts on their common edge is reopened.
    """
    done = np.zeros((r2, r1), dtype=bool)
    labels = np.zeros((r2, r1), dtype=np.int64)

    def run(points: np.ndarray, desc: str) -> None:
        flat = np.unique(points[:, 0] * r1 + points[:, 1])
        flat = flat[~done.reshape(-1)[flat]]
        if flat.size == 0:
            return
        idx = torch.from_numpy(flat).to(device)
        evaluate(idx, desc)
        done.reshape(-1)[flat] = True
        labels.reshape(-1)[flat] = lab[idx].cpu().numpy()

    def uniform(cells: np.ndarray) -> np.ndarray:
        pre = np.zeros((3, r2 + 1, r1 + 1), dtype=np.int64)
        lv = np.where(done, labels + 1, 0)
        pre[0, 1:, 1:] = done.cumsum(0).cumsum(1)
        pre[1, 1:, 1:] = lv.cumsum(0).cumsum(1)
        pre[2, 1:, 1:] = (lv * lv).cumsum(0).cumsum(1)
        cnt, s1, s2 = (_rect_sums(p, cells) for p in pre)
        return cnt * s2 == s1 * s1  # all evaluated labels equal (zero variance)

    rows = np.unique(np.r_[np.arange(0, r2, step), r2 - 1])
    cols = np.unique(np.r_[np.arange(0, r1, step), r1 - 1])
    gi, gj = np.meshgrid(rows, cols, indexing="ij")
    run(np.stack([gi.ravel(), gj.ravel()], 1), "cross-section (coarse)")
    ci, cj = np.meshgrid(np.arange(rows.size - 1), np.arange(cols.size - 1), indexing="ij")
    todo = np.stack([rows[ci.ravel()], rows[ci.ravel() + 1], cols[cj.ravel()], cols[cj.ravel() + 1]], 1)
    leaves = np.zeros((0, 4), dtype=np.int64)
    level = 0
    while todo.shape[0]:
        keep = uniform(todo)
        leaves = np.concatenate([leaves, todo[keep]])
        split = todo[~keep]
        split = split[((split[:, 1] - split[:, 0]) >= 2) | ((split[:, 3] - split[:, 2]) >= 2)]
        if split.shape[0] == 0:
            break
        todo = _split(split)
        level += 1
        corners = np.concatenate([todo[:, [0, 2]], todo[:, [0, 3]], todo[:, [1, 2]], todo[:, [1, 3]]])
        run(corners, f"cross-section (level {level})")
        ok = uniform(leaves)  # new points on a leaf's edge may contradict it: reopen it
        todo = np.concatenate([todo, leaves[~ok]])
        leaves = leaves[ok]
    # fill every point that was not evaluated from the smallest uniform cell that contains it
    lab2, mar2, lss2 = lab.view(r2, r1), mar.view(r2, r1), lss.view(r2, r1)
    todo_mask = torch.from_numpy(~done).to(device)
    area = (leaves[:, 1] - leaves[:, 0]) * (leaves[:, 3] - leaves[:, 2])
    for i0, i1, j0, j1 in leaves[np.argsort(-area, kind="stable")].tolist():
        if i1 - i0 < 2 and j1 - j0 < 2:
            continue  # no grid point inside or on an edge that is not a corner
        m = todo_mask[i0:i1 + 1, j0:j1 + 1]
        if not bool(m.any()):
            continue
        ti = torch.linspace(0.0, 1.0, i1 - i0 + 1, dtype=mar.dtype, device=device)[:, None]
        tj = torch.linspace(0.0, 1.0, j1 - j0 + 1, dtype=mar.dtype, device=device)[None, :]
        for t in (mar2, lss2):
            c00, c01, c10, c11 = t[i0, j0], t[i0, j1], t[i1, j0], t[i1, j1]
            bil = (1 - ti) * ((1 - tj) * c00 + tj * c01) + ti * ((1 - tj) * c10 + tj * c11)
            blk = t[i0:i1 + 1, j0:j1 + 1]
            blk[m] = bil[m]
        lab2[i0:i1 + 1, j0:j1 + 1][m] = lab2[i0, j0]
    return done


@checked(vmin=OPTIONAL_FINITE, vmax=OPTIONAL_FINITE)
def plot_section(
    result: SectionResult,
    ax: Any = None,
    *,
    kind: str = "decision",
    cmap: str = "tab10",
    class_names: Sequence[str] | None = None,
    key: bool = True,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
) -> Any:
    """Draw a cross-section with both axes on the same scale (Fig. 3 for ``kind="decision"``, Fig. 4b for
    ``kind="loss"``). Returns the axes.

    The decision plot colours regions by predicted class, with a key of the classes present (``key``, named by
    ``class_names`` when given), and draws the clean class's boundary (margin = 0) in black. The loss plot shows
    filled loss contours with the same boundary; give several sections the same ``vmin`` / ``vmax`` to draw them on
    one colour scale (their losses are then comparable by colour).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    a1, a2 = result.alphas1.numpy(), result.alphas2.numpy()
    ext = (a1[0], a1[-1], a2[0], a2[-1])
    if kind == "decision":
        colours = plt.get_cmap(cmap)
        labels = result.labels.numpy()
        ax.imshow(labels, origin="lower", extent=ext, cmap=cmap, vmin=0, vmax=9.99, interpolation="nearest",
                  alpha=0.8)
        if key:
            present = sorted(int(c) for c in np.unique(labels))
            names = [str(class_names[c]) if class_names is not None and c < len(class_names) else str(c)
                     for c in present]
            handles = [Patch(facecolor=colours(min(c, 9.99) / 9.99), alpha=0.8, edgecolor="none",
                             label=name + (" (clean)" if c == result.clean_label else ""))
                       for c, name in zip(present, names, strict=True)]
            ax.legend(handles=handles, title="class", fontsize=7, title_fontsize=7, loc="upper left",
                      bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    elif kind == "loss":
        loss = result.loss.numpy()
        lo = float(np.nanmin(loss)) if vmin is None else float(vmin)
        hi = float(np.nanmax(loss)) if vmax is None else float(vmax)
        levels = np.linspace(lo, hi if hi > lo else lo + 1e-12, 21)
        cs = ax.contourf(a1, a2, np.clip(loss, lo, hi), levels=levels, cmap="viridis")
        if colorbar:
            bar = plt.colorbar(cs, ax=ax, fraction=0.046, pad=0.04, label="loss")
            bar.set_ticks(MaxNLocator(6).tick_values(lo, hi))
    else:
        raise ConfigError(f"kind must be 'decision' or 'loss', got {kind!r}")
    mar = result.margins.numpy()
    if np.nanmin(mar) < 0 < np.nanmax(mar):
        ax.contour(a1, a2, mar, levels=[0.0], colors="k", linewidths=1.2)
    ax.plot([0], [0], "w*", markersize=10, markeredgecolor="k")
    ax.set_aspect("equal")
    ax.set_xlabel(f"a1 ({result.direction_names[0] if result.direction_names else 'u1'})")
    ax.set_ylabel(f"a2 ({result.direction_names[1] if len(result.direction_names) > 1 else 'u2'})")
    return ax


def plot_sections(result: SectionResult, *, figsize: tuple[float, float] = (8.5, 4)) -> Any:
    """The decision section and the loss section side by side; returns the figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=figsize)
    plot_section(result, axes[0], kind="decision")
    plot_section(result, axes[1], kind="loss")
    axes[0].set_title("decision regions")
    axes[1].set_title("loss landscape")
    fig.tight_layout()
    return fig


__all__ = ["SectionResult", "cross_section", "plot_section", "plot_sections", "section_directions"]
