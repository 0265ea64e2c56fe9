"""Every numeric setting of every registered attack is validated (robustlens.checks): NaN, inf, a wrong sign, a
non-integer count are a ConfigError naming the setting; values in range construct. Property tests over the rules
each constructor declares (tests/settings_props.py, reusable for any registry)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from settings_props import (
    assert_accepts,
    assert_refuses,
    case_id,
    cases,
    edge_invalid,
    invalid_values,
    numeric_settings,
    objects,
    undeclared,
    valid_values,
)

from robustlens.attacks import ATTACKS, PGD, UniversalPerturbation
from robustlens.errors import ConfigError

CASES = cases(ATTACKS)
PROPS = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


def build(obj: Any) -> dict[str, Any]:
    return {}


def test_every_registered_attack_declares_every_numeric_setting() -> None:
    assert len(objects(ATTACKS)) >= 11
    missing = {obj.__name__: undeclared(obj) for obj in [*objects(ATTACKS), UniversalPerturbation] if undeclared(obj)}
    assert not missing, f"declare these settings with @checked: {missing}"
    assert {"alpha", "eps", "steps", "restarts", "l1_sparsity"} <= set(numeric_settings(PGD))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_edge_values_are_refused(case: tuple[Any, str, Any]) -> None:
    obj, name, rule = case
    for value in edge_invalid(rule):
        assert_refuses(obj, name, value, build)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@PROPS
@given(data=st.data())
def test_values_in_range_construct_and_outside_are_refused(case: tuple[Any, str, Any], data: st.DataObject) -> None:
    obj, name, rule = case
    assert_accepts(obj, name, data.draw(valid_values(rule), "valid"), build)
    assert_refuses(obj, name, data.draw(invalid_values(rule), "invalid"), build)


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": -0.01}, "PGD: alpha must be a finite number > 0 or None, got -0.01"),
    ({"alpha": 0.0}, "alpha must be a finite number > 0"),
    ({"alpha": float("nan")}, "alpha must be a finite number > 0 or None, got nan"),
    ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5 (not a whole number)"),
    ({"eps": float("inf")}, "eps must be a finite number >= 0, got inf"),
])
def test_pgd_settings_from_the_issue(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PGD(**{"eps": 0.1, "random_start": False, **kwargs})


def test_call_settings_are_checked() -> None:
    import torch
    from models import Affine

    from robustlens import Classifier

    clf, x = Classifier(Affine(4, 3)), torch.rand(3, 4)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        PGD(eps=0.1)(clf, x, batch_size=0)
    with pytest.raises(ConfigError, match="invalid must be 'raise' or 'mark'"):
        PGD(eps=0.1)(clf, x, invalid="skip")
