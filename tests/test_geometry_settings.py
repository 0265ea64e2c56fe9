"""Numeric settings of every public geometry function: declared with ``@checked`` (so none can be added unchecked),
and NaN, infinities, wrong signs, fractions for counts, booleans and strings refused with a ConfigError that names
the setting (hypothesis), before any model work. The registered geometry analyses are enumerated from the registry."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from settings_props import assert_refuses, edge_invalid, invalid_values, undeclared

import robustlens.geometry as geo
from robustlens import Classifier, ConfigError
from robustlens.analyses import ANALYSES, load_all
from robustlens.checks import Number, declared_checks

load_all()

NOT_SETTINGS = {"indices", "y", "channels", "figsize"}
"""Parameters the numeric-annotation heuristic picks up that are not numeric settings: dataset indices, labels,
channel lists and a figure size."""
CHECKED_IN_BODY = {"extent", "resolution", "ks"}
"""One value or a pair / a list of sizes: checked element-wise inside the function (tested below)."""

FUNCTIONS = [getattr(geo, n) for n in geo.__all__ if inspect.isfunction(getattr(geo, n))]
GEOMETRY_ANALYSES = sorted(n for n in ANALYSES if ANALYSES.get(n).kind == "geometry")


def _fn(f: Callable[..., Any]) -> Callable[..., Any]:
    return inspect.unwrap(f)


def test_every_public_geometry_analysis_is_registered() -> None:
    registered = {_fn(ANALYSES.get(n).fn) for n in GEOMETRY_ANALYSES}
    expected = {geo.cross_section, geo.noise_error_rate, geo.directional_distance, geo.sqrt_d_law,
                geo.hessian_eigenpairs, geo.input_hessian, geo.boundary_curvature, geo.gradient_alignment,
                geo.taylor_error, geo.collect_normals, geo.transferability_matrix, geo.curvature_overlap,
                geo.subspace_margins}
    missing = {f.__name__ for f in expected} - {f.__name__ for f in registered}
    assert not missing, f"not registered: {sorted(missing)}"


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_no_numeric_setting_is_unchecked(fn: Callable[..., Any]) -> None:
    left = set(undeclared(fn)) - NOT_SETTINGS - CHECKED_IN_BODY
    assert not left, f"{fn.__name__}: numeric settings without a @checked rule: {sorted(left)}"


def _required(fn: Callable[..., Any]) -> dict[str, Any]:
    """Placeholders for the required arguments: the rules are checked before the function body runs."""
    sig = inspect.signature(fn)
    return {n: None for n, p in sig.parameters.items()
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


CASES = [(fn, name, rule) for fn in FUNCTIONS for name, rule in sorted(declared_checks(fn).items())]


def _id(case: tuple[Any, str, Number]) -> str:
    return f"{case[0].__name__}.{case[1]}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_edge_values_are_refused(case: tuple[Any, str, Number]) -> None:
    fn, name, rule = case
    for value in edge_invalid(rule):
        assert_refuses(fn, name, value, _required)


@pytest.mark.parametrize("case", CASES, ids=_id)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_invalid_values_are_refused(case: tuple[Any, str, Number], data: st.DataObject) -> None:
    fn, name, rule = case
    assert_refuses(fn, name, data.draw(invalid_values(rule)), _required)


def test_registered_analyses_declare_their_settings() -> None:
    """Every registered geometry analysis with a numeric setting declares it (the list is the registry's)."""
    for n in GEOMETRY_ANALYSES:
        fn = ANALYSES.get(n).fn
        assert not set(undeclared(fn)) - NOT_SETTINGS - CHECKED_IN_BODY, n


def _clf() -> Classifier:
    torch.manual_seed(0)
    return Classifier(torch.nn.Linear(6, 3), input_shape=(6,))


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, 0.0, (1.0, math.nan), (1.0,), "1"])
def test_cross_section_extent_refused(value: Any) -> None:
    with pytest.raises(ConfigError, match="extent"):
        geo.cross_section(_clf(), torch.rand(6), directions=("random", "random"), extent=value, resolution=3,
                          progress=False)


@pytest.mark.parametrize("value", [1, 2.5, math.nan, (3, 1), (3, 3, 3), True])
def test_cross_section_resolution_refused(value: Any) -> None:
    with pytest.raises(ConfigError, match="resolution"):
        geo.cross_section(_clf(), torch.rand(6), directions=("random", "random"), resolution=value, progress=False)


@pytest.mark.parametrize("value", [(), (0,), (1.5,), (math.nan,), "12", 3])
def test_curvature_overlap_ks_refused(value: Any) -> None:
    with pytest.raises(ConfigError, match="ks"):
        geo.curvature_overlap(_clf(), torch.rand(2, 6), ks=value)


@pytest.mark.parametrize("sigmas", [[math.nan], [0.1, math.inf], [-0.1], []])
def test_noise_sigmas_refused(sigmas: list[float]) -> None:
    with pytest.raises(ConfigError, match="sigmas"):
        geo.noise_error_rate(_clf(), torch.rand(2, 6), sigmas, n_draws=2, progress=False)


@pytest.mark.parametrize("ncv", [1, 2, 7])
def test_lanczos_basis_size_outside_arpack_range_refused(ncv: int) -> None:
    """k=1, which='both': ARPACK computes 2 eigenpairs, so ncv must be in (2, D = 6]."""
    with pytest.raises(ConfigError, match="ncv"):
        geo.hessian_eigenpairs(_clf(), torch.rand(2, 6), k=1, method="lanczos", ncv=ncv, progress=False)
