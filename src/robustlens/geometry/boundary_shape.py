"""Principal curvatures of the decision boundary near an input: the shape operator of a level set at the
boundary point that a minimal perturbation reaches (paper Sec. II-D).

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the face of adversity: Understanding and
improving deep learning through adversarial robustness", Proc. IEEE 2021 (Sec. II-D, eq. 9 and 16). Original
methods: Fawzi, Moosavi-Dezfooli, Frossard, Soatto, "Empirical study of the topology and geometry of deep
networks", CVPR 2018 (boundary curvature along the normal's tangent space); Moosavi-Dezfooli, Fawzi, Frossard,
"DeepFool: a simple and accurate method to fool deep neural networks", CVPR 2016 (the boundary point).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..analyses import register_analysis
from ..checks import COUNT, NON_NEGATIVE, OPTIONAL_COUNT, checked
from ..classifier import Classifier
from ..errors import ConfigError
from ..results import Result
from ._common import LossSpec, grad_fn, prepare_differentiable, require_finite_rows, warn_unmeasured
from .hessian import hessian_eigenpairs, spectrum_ends


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


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> BoundaryCurvature:
    from ..attacks.deepfool import DeepFool

    return boundary_curvature(clf, x, y, k=1, attack=DeepFool(norm=2, overshoot=0.02, max_iter=10), seed=seed)


@register_analysis("boundary-curvature", kind="geometry", smoke=_smoke,
                   summary="principal curvatures of the decision boundary at the minimal perturbation")
@checked(k=COUNT, overshoot=NON_NEGATIVE, tol=NON_NEGATIVE, batch_size=OPTIONAL_COUNT)
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
    batch_size: int | None = None,
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

    Samples the attack does not fool (or where ``grad f(x_b) = 0``) get ``nan`` curvatures, with a warning, and
    the former ``inf`` distance. ``batch_size`` is that of :func:`hessian_eigenpairs`.

    Ortiz-Jimenez et al., "Optimism in the face of adversity", Proc. IEEE 2021, Sec. II-D; the method follows
    Fawzi, Moosavi-Dezfooli, Frossard, Soatto, "Empirical study of the topology and geometry of deep networks",
    CVPR 2018.

    Example (a linear two-class model: its boundary is a hyperplane, every principal curvature is 0):
        >>> import torch
        >>> from robustlens import Classifier
        >>> from robustlens.geometry import boundary_curvature
        >>> _ = torch.manual_seed(0)
        >>> clf = Classifier(torch.nn.Linear(5, 2), input_shape=(5,))
        >>> bc = boundary_curvature(clf, torch.rand(3, 5), k=1, function="logit-difference")
        >>> bool(bc.success.all()), float(bc.max_abs.abs().max()) < 1e-6
        (True, True)

    Returns:
        :class:`BoundaryCurvature`.
    """
    if function not in ("ce", "logit-difference"):
        raise ConfigError(f"function must be 'ce' or 'logit-difference', got {function!r}")
    kt, kb = spectrum_ends(k, which)
    from ..attacks.deepfool import DeepFool

    x, y = prepare_differentiable(clf, x, y, "boundary_curvature")
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
    crossed = ok.nonzero().flatten().tolist()
    require_finite_rows(g[crossed], "boundary_curvature", "the gradient at the boundary point", crossed)
    gnorm = g.norm(dim=1)
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
    warn_unmeasured("boundary_curvature", ~ok, "the attack did not reach the decision boundary", stacklevel=4)
    warn_unmeasured("boundary_curvature", ok & (gnorm == 0), "the gradient at the boundary point is zero",
                    stacklevel=4)
    dist = torch.where(ok, (xb - x).flatten(1).norm(dim=1), torch.full_like(gnorm, math.inf))
    return BoundaryCurvature(
        top_values=top, bottom_values=bot, boundary_points=xb.cpu(), distance=dist.detach().cpu(),
        gradient_norm=gnorm.detach().cpu(), success=ok.cpu(), labels=y.cpu(), boundary_labels=zb.cpu(),
        function=function, hvps=hvps,
        settings={"k": k, "which": which, "overshoot": overshoot, "method": method, "tol": tol, "seed": seed,
                  "attack": getattr(attack, "name", type(attack).__name__)},
    )


__all__ = ["BoundaryCurvature", "boundary_curvature"]
