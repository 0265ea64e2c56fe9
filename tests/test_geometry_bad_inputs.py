"""The silent wrong numbers the hostile-model matrix found in the geometry analyses, each pinned by a test."""

from __future__ import annotations

import math

import pytest
import torch
from hostile import SHAPE, DropoutAlways, NaNWhere, NoGradientPath, SqrtSquared, inputs, layers
from torch import nn

from robustlens import Classifier, ConfigError, InputError, RobustLensError, RobustLensWarning
from robustlens.geometry import (
    cross_section,
    diagonal_dct_subspaces,
    gradient_alignment,
    hessian_eigenpairs,
    input_hessian,
    subspace_margins,
    taylor_error,
)


def clf_of(model: nn.Module, **kw: object) -> Classifier:
    return Classifier(model.eval(), input_shape=SHAPE, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_no_gradient_path_is_an_error_not_a_flat_spectrum(method: str) -> None:
    """torch.func differentiates ``layers(x.detach())`` to zero: the spectrum used to be all zeros."""
    with pytest.raises(RobustLensError, match="no gradient path"):
        hessian_eigenpairs(clf_of(NoGradientPath()), inputs(), k=1, method=method, progress=False)
    with pytest.raises(RobustLensError, match="no gradient path"):
        input_hessian(clf_of(NoGradientPath()), inputs())


def test_zero_curvature_names_the_cause_instead_of_arpack() -> None:
    """The margin loss of an affine model has a zero Hessian: ARPACK's 'Starting vector is zero' used to reach the
    user raw; the dense path gives the true (zero) spectrum."""
    torch.manual_seed(0)
    clf = clf_of(nn.Sequential(nn.Flatten(), nn.Linear(16, 3)))
    with pytest.raises(InputError, match="does not curve.*method='dense'"):
        hessian_eigenpairs(clf, inputs(), k=1, loss="margin", method="lanczos", progress=False)
    dense = hessian_eigenpairs(clf, inputs(), k=1, loss="margin", method="dense")
    assert float(dense.full_values.abs().max()) == 0.0


def test_nan_gradients_are_errors_naming_the_cause() -> None:
    clf, x = clf_of(SqrtSquared()), inputs(zeros=True)
    with pytest.raises(InputError, match="sqrt or log at 0"):
        hessian_eigenpairs(clf, x, k=1, method="lanczos", progress=False)
    with pytest.raises(InputError, match="sqrt or log at 0"):
        taylor_error(clf, x, None, 0.01 * torch.ones_like(x))
    with pytest.raises(InputError, match="sqrt or log at 0"):
        gradient_alignment(clf, x)
    with pytest.raises(InputError, match="sqrt or log at 0"):
        cross_section(clf, x[0], directions=("gradient", "random"), resolution=3, progress=False)


def test_stopped_subspace_margin_is_nan_with_a_warning_not_infinite() -> None:
    """An infinite margin reads as 'the model is invariant to this subspace'; a NaN gradient says nothing of it."""
    clf, x = clf_of(SqrtSquared()), inputs(zeros=True)
    spaces = diagonal_dct_subspaces(SHAPE, block=2, stride=2)[:1]
    with pytest.warns(RobustLensWarning, match="stopped"):
        res = subspace_margins(clf, x, spaces, max_iter=5, progress=False)
    stopped = res.clean_correct & res.margins[:, 0].isnan()
    assert bool(stopped.any()) and not bool(torch.isinf(res.margins).any())


def test_nan_logits_on_the_grid_are_marked_not_class_zero() -> None:
    """``argmax`` of a NaN row is 0: grid points in a NaN region used to be labelled class 0."""
    clf = clf_of(NaNWhere(lambda x: x.flatten(1)[:, 0] > 0.7))
    x = torch.full((1, *SHAPE), 0.5)
    u = torch.zeros(2, *SHAPE)
    u[0, 0, 0, 0], u[1, 0, 1, 1] = 1.0, 1.0
    with pytest.warns(RobustLensWarning, match="NaN or Inf logits at .* grid point"):
        sec = cross_section(clf, x, directions=u, extent=0.4, resolution=5, progress=False)
    nan_cols = sec.alphas1 > 0.2 + 1e-6  # first pixel 0.5 + a1 > 0.7
    assert bool((sec.labels[:, nan_cols] == -1).all()) and bool((sec.labels[:, ~nan_cols] >= 0).all())
    assert bool(sec.margins[:, nan_cols].isnan().all())
    # the NaN region (a1 > 0.2) is not a crossing: a finite distance along +u1 is a real class change before it
    d = sec.axis_distance["+u1"]
    assert math.isinf(d) or d < 0.2
    with torch.no_grad():
        z = layers()(x + torch.linspace(0.0, 0.2, 9)[:, None, None, None] * u[0])
    assert math.isinf(d) == bool((z.argmax(1) == sec.clean_label).all())


def test_declared_stochastic_models_are_refused() -> None:
    clf = clf_of(DropoutAlways(), stochastic=True, draws=2)
    for call in (lambda: hessian_eigenpairs(clf, inputs(), k=1, progress=False),
                 lambda: cross_section(clf, inputs()[0], resolution=3, progress=False)):
        with pytest.raises(ConfigError, match="declared stochastic"):
            call()
