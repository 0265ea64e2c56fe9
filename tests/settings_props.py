"""Property tests of numeric settings for every object of a registry (attacks, training objectives, ...).

For each registered class (or function) ``obj``:

- every numeric constructor parameter (a number or ``None`` default with a numeric annotation, or a pair of numbers)
  is declared with :func:`robustlens.checks.checked` (:func:`undeclared`);
- every declared rule refuses NaN, +-inf (unless it allows inf), values outside its range (a wrong sign),
  non-integers for counts, booleans and strings with a :class:`ConfigError` naming the parameter
  (:func:`assert_refuses`);
- values inside the rule's range construct (:func:`assert_accepts`).

A test module uses it as ``tests/test_attacks_settings.py`` does: ``cases(REGISTRY)`` gives the ``(obj, parameter)``
pairs to parametrize over, ``build`` the keyword arguments each object needs besides the one under test.
"""

from __future__ import annotations

import inspect
import math
import numbers
import re
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from robustlens.checks import Number, Pair, declared_checks
from robustlens.errors import ConfigError
from robustlens.registry import Registry

NUMERIC_ANNOTATION = re.compile(r"\b(int|float)\b")
NOT_SETTINGS = {"norm", "seed"}
"""``norm`` is parsed by ``parse_norm`` (it takes names such as 'Linf'); ``seed`` is any integer."""


def objects(registry: Registry[Any]) -> list[Any]:
    """The distinct registered objects (one class may be registered under several names)."""
    out: list[Any] = []
    for entry in registry.entries():
        if entry.obj not in out:
            out.append(entry.obj)
    return out


def _target(obj: Any) -> Callable[..., Any]:
    return obj.__init__ if isinstance(obj, type) else obj


def numeric_settings(obj: Any) -> list[str]:
    """Constructor parameters that hold numbers: a numeric default (not ``bool``), a tuple of numbers, or a ``None``
    default with ``int`` / ``float`` in the annotation."""
    out = []
    for name, p in inspect.signature(_target(obj)).parameters.items():
        if name in NOT_SETTINGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name == "self":
            continue
        d = p.default
        ann = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", str(p.annotation))
        if isinstance(d, bool):
            continue
        if isinstance(d, numbers.Real):
            out.append(name)
        elif isinstance(d, tuple) and d and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in d):
            out.append(name)
        elif d is None and NUMERIC_ANNOTATION.search(str(ann)) and "str" not in str(ann).split("|")[0]:
            out.append(name)
    return out


def undeclared(obj: Any) -> list[str]:
    """Numeric settings of ``obj`` that no :func:`checked` rule covers."""
    return sorted(set(numeric_settings(obj)) - set(declared_checks(obj)))


def cases(registry: Registry[Any]) -> list[tuple[Any, str, Number]]:
    """``(obj, parameter, rule)`` for every declared rule of every registered object."""
    return [(obj, name, rule) for obj in objects(registry) for name, rule in sorted(declared_checks(obj).items())]


def case_id(case: tuple[Any, str, Number]) -> str:
    return f"{getattr(case[0], '__name__', case[0])}.{case[1]}"


def _scalar_invalid(rule: Number) -> st.SearchStrategy[Any]:
    bad: list[st.SearchStrategy[Any]] = [st.just(math.nan), st.just(-math.inf), st.just(True), st.just("1")]
    if not rule.allow_inf:
        bad.append(st.just(math.inf))
    if not rule.optional:
        bad.append(st.just(None))
    if rule.low is not None:
        below = st.floats(max_value=rule.low, exclude_max=not rule.low_open, allow_nan=False, allow_infinity=False)
        bad.append(below.filter(lambda v: v < rule.low or (rule.low_open and v == rule.low)))
    if rule.high is not None:
        above = st.floats(min_value=rule.high, exclude_min=not rule.high_open, allow_nan=False, allow_infinity=False)
        bad.append(above.filter(lambda v: v > rule.high or (rule.high_open and v == rule.high)))
    if rule.integer:
        lo = rule.low if rule.low is not None else -1e6
        hi = rule.high if rule.high is not None else 1e6
        bad.append(st.floats(min_value=lo, max_value=hi, allow_nan=False).filter(lambda v: not float(v).is_integer()))
    return st.one_of(*bad)


def _scalar_valid(rule: Number) -> st.SearchStrategy[Any]:
    lo = rule.low if rule.low is not None else -1e6
    hi = rule.high if rule.high is not None else 1e6
    if rule.integer:
        ilo = math.floor(lo) + 1 if rule.low_open or not float(lo).is_integer() else int(lo)
        ihi = math.ceil(hi) - 1 if rule.high_open or not float(hi).is_integer() else int(hi)
        return st.integers(min_value=int(ilo), max_value=int(min(ihi, ilo + 1000)))
    return st.floats(min_value=lo, max_value=hi, exclude_min=rule.low_open, exclude_max=rule.high_open,
                     allow_nan=False, allow_infinity=False)


def edge_invalid(rule: Number) -> list[Any]:
    """The values every rule of its kind must refuse, listed: NaN, infinities, just past each bound, a fraction for
    a count, a boolean, a string, ``None`` when not optional (a pair: each of them in either position)."""
    if isinstance(rule, Pair):
        good = rule.each.low + 1 if rule.each.low is not None else 1.0
        if rule.each.high is not None:
            good = (max(rule.each.low or 0.0, 0.0) + rule.each.high) / 2
        return [v for b in edge_invalid(rule.each) for v in ((b, good), (good, b))] + [1.0, (1.0,)]
    out: list[Any] = [math.nan, -math.inf, True, "1"]
    if not rule.allow_inf:
        out.append(math.inf)
    if not rule.optional:
        out.append(None)
    if rule.low is not None:
        out.append(rule.low if rule.low_open else math.nextafter(rule.low, -math.inf) - 1e-9)
        out.append(rule.low - 1)
    if rule.high is not None:
        out.append(rule.high if rule.high_open else math.nextafter(rule.high, math.inf) + 1e-9)
        out.append(rule.high + 1)
    if rule.integer:
        out.append((rule.low if rule.low is not None else 0) + 1.5)
    return out


def invalid_values(rule: Number) -> st.SearchStrategy[Any]:
    """Values the rule must refuse."""
    if isinstance(rule, Pair):
        good = _scalar_valid(rule.each)
        bad = _scalar_invalid(rule.each)
        return st.one_of(st.tuples(bad, good), st.tuples(good, bad), st.just(1.0), st.just((1.0,)))
    return _scalar_invalid(rule)


def valid_values(rule: Number) -> st.SearchStrategy[Any]:
    """Values the rule accepts."""
    if isinstance(rule, Pair):
        return st.tuples(_scalar_valid(rule.each), _scalar_valid(rule.each))
    return _scalar_valid(rule)


def assert_refuses(obj: Any, name: str, value: Any, build: Callable[[Any], dict[str, Any]]) -> None:
    """Constructing ``obj`` with ``name=value`` raises a :class:`ConfigError` that names ``name``."""
    kwargs = {**build(obj), name: value}
    try:
        obj(**kwargs)
    except ConfigError as e:
        assert name in str(e), f"{obj.__name__}({name}={value!r}): the message does not name {name}: {e}"
        return
    raise AssertionError(f"{getattr(obj, '__name__', obj)}({name}={value!r}) was accepted")


def assert_accepts(obj: Any, name: str, value: Any, build: Callable[[Any], dict[str, Any]]) -> Any:
    """Constructing ``obj`` with ``name=value`` succeeds (the setting is inside its declared range)."""
    return obj(**{**build(obj), name: value})


__all__ = [
    "assert_accepts",
    "assert_refuses",
    "case_id",
    "cases",
    "edge_invalid",
    "invalid_values",
    "numeric_settings",
    "objects",
    "undeclared",
    "valid_values",
]
