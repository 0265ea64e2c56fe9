"""The shared registry and the numeric-settings validator."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from robustlens.checks import (
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    PROBABILITY,
    Number,
    check,
    checked,
    declared_checks,
    numeric_parameters,
)
from robustlens.errors import ConfigError
from robustlens.registry import Registry


def test_registry_decorator_aliases_and_errors() -> None:
    reg: Registry[type] = Registry("widget")

    @reg.register("deep_fool", aliases=("df",), minimal=True)
    class A:
        pass

    @reg.register()
    class Other:
        pass

    assert reg.get("Deep-Fool") is A and reg.get("DF") is A and reg.get("other") is Other
    assert reg.entry("df").meta == {"minimal": True} and reg.entry("df").name == "deep-fool"
    assert list(reg) == ["deep-fool", "other"] and len(reg) == 2 and "df" in reg and "nope" not in reg
    with pytest.raises(ConfigError, match="unknown widget 'nope'; choose one of deep-fool, other"):
        reg.get("nope")
    with pytest.raises(ConfigError, match="already registered"):
        reg.add("df", Other)
    reg.add("deep-fool", A)  # re-registering the same object is harmless (module reloads)
    assert len(reg) == 2


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), -0.01, 0.0, "0.1", None, True])
def test_positive_rejects(bad: object) -> None:
    with pytest.raises(ConfigError, match="alpha must be a finite number > 0"):
        check(bad, "alpha", POSITIVE, "PGD")


def test_rules_convert_and_describe() -> None:
    assert check(torch.tensor(3.0), "steps", COUNT) == 3 and isinstance(check(3.0, "steps", COUNT), int)
    with pytest.raises(ConfigError, match="not a whole number"):
        check(2.5, "steps", COUNT)
    assert check(0.0, "eps", NON_NEGATIVE) == 0.0
    assert check(math.inf, "limit", Number(low=0, allow_inf=True)) == math.inf
    assert check(None, "x", Number(optional=True)) is None
    assert PROBABILITY.describe() == "a finite number in [0, 1]"
    assert Number(integer=True, low=0, high=10, high_open=True).describe() == "an integer in [0, 10)"


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_rules_agree_with_their_definition(v: float) -> None:
    ok = math.isfinite(v) and v > 0
    assert POSITIVE.accepts(v) == ok
    assert PROBABILITY.accepts(v) == (math.isfinite(v) and 0 <= v <= 1)


def test_checked_validates_arguments_and_defaults() -> None:
    class Thing:
        @checked(alpha=POSITIVE, steps=COUNT)
        def __init__(self, alpha: float = 0.1, steps: int = 10, flag: bool = True) -> None:
            self.alpha, self.steps = alpha, steps

    t = Thing(steps=3.0)  # type: ignore[arg-type]
    assert t.steps == 3 and isinstance(t.steps, int)
    with pytest.raises(ConfigError, match="Thing: alpha must be a finite number > 0, got nan"):
        Thing(alpha=float("nan"))
    assert set(declared_checks(Thing)) == {"alpha", "steps"}
    assert numeric_parameters(Thing) == ["alpha", "steps"]
    with pytest.raises(TypeError, match="no parameter"):
        checked(nope=POSITIVE)(lambda x: x)


def test_analysis_registry_enumerates_registered_functions() -> None:
    from robustlens.analyses import ANALYSES, load_all, register_analysis

    @register_analysis("test-identity", kind="test", smoke=lambda clf, x, y, seed: x)
    def identity(clf: object, x: torch.Tensor) -> torch.Tensor:
        """Return the inputs."""
        return x

    try:
        assert load_all() is ANALYSES and "test-identity" in ANALYSES
        a = ANALYSES.get("test_identity")
        assert a.fn is identity and a.kind == "test" and a.summary == "Return the inputs."
    finally:
        ANALYSES._entries.pop("test-identity")
