"""Alignment of the minimal adversarial perturbation with the loss gradient (paper Sec. II-C).

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the face of adversity: Understanding and
improving deep learning through adversarial robustness", Proc. IEEE 2021 (Sec. II-C: a locally linear network has
``r*(x)`` along ``nabla_x l(x)``). Original method: Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and
accurate method to fool deep neural networks", CVPR 2016 (the minimal L2 perturbation, eq. 9).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..analyses import register_analysis
from ..classifier import Classifier
from ..ops import per_sample
from ..results import Result
from ._common import LossSpec, prepare, require_finite_rows, warn_unmeasured


@dataclass
class AlignmentResult(Result):
    """Cosine between the minimal L2 perturbation ``r*(x)`` and the loss gradient, per sample (Sec. II-C)."""

    cosine: Tensor
    perturbation_norm: Tensor
    gradient_norm: Tensor

    @property
    def median(self) -> float:
        return float(self.cosine.median())


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> AlignmentResult:
    return gradient_alignment(clf, x, y, seed=seed)


@register_analysis("gradient-alignment", kind="geometry", smoke=_smoke,
                   summary="cosine between the minimal L2 perturbation and the loss gradient (Sec. II-C)")
def gradient_alignment(
    clf: Classifier,
    x: Tensor,
    y: Tensor | None = None,
    perturbation: Tensor | None = None,
    *,
    loss: LossSpec = "ce",
    seed: int = 0,
) -> AlignmentResult:
    """``cos(r*(x), nabla_x l(x))`` per sample: near 1 when the network is locally almost linear (Sec. II-C).

    Ortiz-Jimenez et al., "Optimism in the face of adversity", Proc. IEEE 2021, Sec. II-C. ``perturbation`` is the
    minimal L2 perturbation; when omitted it is computed by DeepFool (L2, eq. 9; Moosavi-Dezfooli, Fawzi, Frossard,
    "DeepFool", CVPR 2016) with ``seed``. Samples DeepFool does not fool get ``nan``, with a warning; a NaN or Inf
    input gradient is an :class:`~robustlens.InputError`, and so is a declared stochastic classifier (the alignment
    of one draw's gradient is not the model's). Gradients are computed in chunks of ``clf.batch_size``.
    """
    x, y = prepare(clf, x, y, "gradient_alignment")
    _, g = clf.loss_and_input_grad(x, y, loss=loss, validate=False)
    require_finite_rows(g, "gradient_alignment", "the input gradient of the loss")
    if perturbation is None:
        from ..attacks.deepfool import DeepFool

        res = DeepFool(norm=2)(clf, x, y, seed=seed)
        warn_unmeasured("gradient_alignment", ~res.success, "DeepFool did not fool the model")
        perturbation = torch.where(
            per_sample(res.success, x), res.perturbation, torch.full_like(x, float("nan"))
        )
    r = perturbation.to(x).flatten(1)
    gf = g.flatten(1)
    rn, gn = r.norm(dim=1), gf.norm(dim=1)
    cos = (r * gf).sum(1) / (rn * gn).clamp_min(1e-30)
    return AlignmentResult(cosine=cos.cpu(), perturbation_norm=rn.cpu(), gradient_norm=gn.cpu())


__all__ = ["AlignmentResult", "gradient_alignment"]
