"""Why a report section failed, in terms a user can act on.

When a section's computation raises, the error is often a symptom several layers down ("ARPACK error -9: Starting
vector is zero" from the Hessian solver, "DeepFool finds no boundary" from an attack). :func:`failure_cause` probes
the classifier on the report's first samples for the usual causes (a model that returns non-finite logits, a model
that gives every input the same logits, a loss with no gradient with respect to the input) and names the one it
finds; the page shows it, with the internal message kept as the detail.
"""

from __future__ import annotations

import torch

from ..classifier import Classifier
from ..errors import RobustLensError
from .data import ReportData

PROBE_SAMPLES = 64


def failure_cause(clf: Classifier, data: ReportData) -> str:
    """The cause of a failure found by probing ``clf`` on up to :data:`PROBE_SAMPLES` of the report's samples, or
    ``""`` when the classifier looks sound (then the error message itself is the best explanation)."""
    x, y = data.head(min(PROBE_SAMPLES, len(data.y)))
    try:
        with torch.no_grad(), clf.analysis_mode():
            logits = clf.forward(x.to(clf.device, clf.dtype))
    except RobustLensError as e:  # the classifier's own checks (non-finite logits, wrong shapes) say what to do
        return str(e)
    except Exception:  # noqa: BLE001 - no better explanation than the section's own error
        return ""
    if not bool(torch.isfinite(logits).all()):
        return ("the classifier returns non-finite logits (NaN or inf) on these inputs: check its weights and the "
                "range of inputs it expects")
    spread = float((logits - logits[:1]).abs().amax())
    scale = float(logits.abs().amax())
    if spread <= 1e-6 * max(1.0, scale):
        return ("the classifier is constant on these inputs (every image gets the same logits): it was not trained, "
                "or its weights were not loaded; nothing about its decision boundary can be measured")
    try:
        _, grad = clf.loss_and_input_grad(x, y)
    except Exception:  # noqa: BLE001 - a model without a gradient path is diagnosed by the attacks themselves
        return ""
    if not bool(torch.isfinite(grad).all()):
        return ("the gradient of the loss with respect to the input is not finite on these inputs (NaN or inf): "
                "gradient-based analyses cannot run on this model")
    if float(grad.abs().amax()) == 0.0:
        return ("the loss has zero gradient with respect to the input on these images (a saturated or "
                "piecewise-constant model): gradient-based analyses cannot run on it")
    return ""


__all__ = ["PROBE_SAMPLES", "failure_cause"]
