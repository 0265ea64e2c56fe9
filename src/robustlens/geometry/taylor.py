"""How well the first- and second-order Taylor models of the loss predict it along a perturbation (eq. 16).

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the face of adversity: Understanding and
improving deep learning through adversarial robustness", Proc. IEEE 2021 (Sec. II-D, eq. 15-16). Original method:
Moosavi-Dezfooli, Fawzi, Uesato, Frossard, "Robustness via curvature regularization, and vice versa", CVPR 2019
(the second-order model of the loss); Qin et al., "Adversarial robustness through local linearization",
NeurIPS 2019 (the first-order error as a measure of local linearity).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..analyses import register_analysis
from ..classifier import Classifier, resolve_loss
from ..errors import ConfigError
from ..results import Result
from ..seeding import generator
from ._common import NONFINITE_LOGITS, LossSpec, hvp_fn, prepare_differentiable, require_finite_rows


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


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> TaylorResult:
    r = 0.01 * torch.randn(x.shape, generator=generator(seed, "taylor-smoke")).to(x)
    return taylor_error(clf, x, y, r)


@register_analysis("taylor-error", kind="geometry", smoke=_smoke,
                   summary="error of the first- and second-order models of the loss along r (eq. 16)")
def taylor_error(
    clf: Classifier, x: Tensor, y: Tensor | None, r: Tensor, *, loss: LossSpec = "ce"
) -> TaylorResult:
    """Local-linearity error of the second-order model ``l(x+r) ~ l + r^T g + r^T H r / 2`` (eq. 16).

    Ortiz-Jimenez et al., "Optimism in the face of adversity", Proc. IEEE 2021, eq. (15)-(16); the second-order
    model is that of Moosavi-Dezfooli et al., "Robustness via curvature regularization, and vice versa", CVPR 2019.
    One gradient, one batched HVP and one forward pass per sample, in chunks of ``clf.batch_size``. For a
    quadratic loss the second-order error is zero; a small first-order error means the network is locally almost
    linear along ``r``. NaN or Inf gradients, Hessian-vector products or losses are an
    :class:`~robustlens.InputError` naming the samples. The model is differentiated as a fixed function
    (deterministic; no seed).
    """
    x, y = prepare_differentiable(clf, x, y, "taylor_error")
    r = r.detach().to(x)
    if r.shape != x.shape:
        raise ConfigError(f"r must have the inputs' shape {tuple(x.shape)}, got {tuple(r.shape)}")
    l0, g = clf.loss_and_input_grad(x, y, loss=loss, validate=False)
    require_finite_rows(g, "taylor_error", "the input gradient of the loss")
    hvp, lfn = hvp_fn(clf, loss), resolve_loss(loss)
    hrs, l1s = [], []
    with clf.analysis_mode():
        for s in clf.chunks(x.shape[0]):
            hrs.append(hvp(x[s], y[s], r[s]))
            with torch.no_grad():
                l1s.append(lfn(clf.forward(x[s] + r[s]), y[s]))
    hr, l1 = torch.cat(hrs), torch.cat(l1s)
    require_finite_rows(hr, "taylor_error", "the Hessian-vector product of the loss")
    require_finite_rows(l1, "taylor_error", "the loss at x + r", cause=NONFINITE_LOGITS)
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


__all__ = ["TaylorResult", "taylor_error"]
