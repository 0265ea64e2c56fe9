"""The one validator of numeric settings: finite, sign, integer and range, with a message that says what to do.

Comparisons with NaN are always false, so a plain ``if alpha < 0`` lets ``alpha=nan`` through; every numeric
setting of an attack, objective, analysis or command-line option goes through :func:`check` instead. Functions and
constructors declare their rules once with :func:`checked`; the rules stay readable on the function
(:func:`declared_checks`), so a test can assert that no numeric parameter is left unchecked::

    class PGD(BoundedAttack):
        @checked(eps=NON_NEGATIVE, alpha=POSITIVE, steps=COUNT)
        def __init__(self, norm="Linf", eps=8 / 255, alpha=None, steps=40): ...

    PGD(alpha=-0.01)   # ConfigError: PGD: alpha must be a finite number > 0, got -0.01
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from .errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Number:
    """The rule of one numeric setting.

    Attributes:
        integer: the value must be a whole number (returned as ``int``).
        low, high: bounds (``None``: unbounded); ``low_open`` / ``high_open`` exclude the bound itself.
        allow_inf: ``+inf`` is accepted (e.g. "no limit"); NaN never is.
        optional: ``None`` is accepted and returned as is.
    """

    integer: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_inf: bool = False
    optional: bool = False

    def describe(self) -> str:
        """``"an integer >= 1"``, ``"a finite number > 0"``, ``"a number in [0, 1]"``, ..."""
        what = "an integer" if self.integer else ("a number" if self.allow_inf else "a finite number")
        if self.low is not None and self.high is not None:
            lo = "(" if self.low_open else "["
            hi = ")" if self.high_open else "]"
            out = f"{what} in {lo}{self.low:g}, {self.high:g}{hi}"
        elif self.low is not None:
            out = f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            out = f"{what} {'<' if self.high_open else '<='} {self.high:g}"
        else:
            out = what
        if self.allow_inf:
            out += " (inf allowed)"
        if self.optional:
            out += " or None"
        return out

    def accepts(self, value: Any) -> bool:
        """Whether :meth:`__call__` would accept ``value``."""
        try:
            self(value, "value")
        except ConfigError:
            return False
        return True

    def __call__(self, value: Any, name: str, owner: str | None = None) -> Any:
        """``value`` converted to ``int`` / ``float`` when it satisfies the rule; a :class:`ConfigError` otherwise."""
        if value is None and self.optional:
            return None
        where = f"{owner}: " if owner else ""

        def fail(reason: str = "") -> ConfigError:
            return ConfigError(f"{where}{name} must be {self.describe()}, got {value!r}{reason}")

        if isinstance(value, bool) or value is None:
            raise fail()
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:  # 0-d tensors and numpy scalars
            value = value.item()
        if not isinstance(value, numbers.Real):
            raise fail(f" (a {type(value).__name__})")
        v = float(value)
        if math.isnan(v):
            raise fail()
        if math.isinf(v) and not (self.allow_inf and v > 0):
            raise fail()
        if self.integer and not math.isinf(v):
            if not v.is_integer():
                raise fail(" (not a whole number)")
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            raise fail()
        if self.high is not None and (v > self.high or (self.high_open and v == self.high)):
            raise fail()
        if self.integer and not math.isinf(v):
            return int(v)
        return v


@dataclass(frozen=True)
class Pair(Number):
    """Two numbers that each satisfy the rule, given as a tuple or list (e.g. a schedule's start and end)."""

    def describe(self) -> str:
        return f"a pair of values, each {super().describe()}"

    @property
    def each(self) -> Number:
        """The rule of one element."""
        return Number(**{f.name: getattr(self, f.name) for f in fields(Number)})

    def __call__(self, value: Any, name: str, owner: str | None = None) -> Any:
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            where = f"{owner}: " if owner else ""
            raise ConfigError(f"{where}{name} must be {self.describe()}, got {value!r}")
        return (self.each(value[0], f"{name}[0]", owner), self.each(value[1], f"{name}[1]", owner))


FINITE = Number()
POSITIVE = Number(low=0, low_open=True)
NON_NEGATIVE = Number(low=0)
PROBABILITY = Number(low=0, high=1)
OPEN_UNIT = Number(low=0, high=1, low_open=True, high_open=True)
COUNT = Number(integer=True, low=1)
OPTIONAL_COUNT = Number(integer=True, low=1, optional=True)
NON_NEGATIVE_INT = Number(integer=True, low=0)


def check(value: Any, name: str, rule: Number, owner: str | None = None) -> Any:
    """Validate one setting: ``check(alpha, "alpha", POSITIVE, "PGD")``. Returns the converted value."""
    return rule(value, name, owner)


def _owner(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    if fn.__name__ == "__init__" and args:
        return type(args[0]).__name__
    return fn.__qualname__.split(".<locals>")[-1].removesuffix(".__init__")


def checked(**rules: Number) -> Callable[[F], F]:
    """Decorator: validate the named arguments of a function or ``__init__`` with their rules before it runs.

    Defaults are validated too (a bad default is a bug). The converted values (``int`` for integer rules) are
    passed on. The rules are kept on the wrapper as ``__robustlens_checks__`` (see :func:`declared_checks`).
    """

    def deco(fn: F) -> F:
        sig = inspect.signature(fn)
        unknown = set(rules) - set(sig.parameters)
        if unknown:
            raise TypeError(f"checked(): {fn.__qualname__} has no parameter(s) {', '.join(sorted(unknown))}")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            owner = _owner(fn, args)
            for name, rule in rules.items():
                bound.arguments[name] = rule(bound.arguments[name], name, owner)
            return fn(*bound.args, **bound.kwargs)

        inherited = dict(getattr(fn, "__robustlens_checks__", {}))
        wrapper.__robustlens_checks__ = {**inherited, **rules}  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco


def declared_checks(fn: Callable[..., Any]) -> dict[str, Number]:
    """The rules :func:`checked` attached to ``fn`` (a class gives those of its ``__init__``)."""
    target = fn.__init__ if isinstance(fn, type) else fn  # type: ignore[misc]
    return dict(getattr(target, "__robustlens_checks__", {}))


def numeric_parameters(fn: Callable[..., Any]) -> list[str]:
    """Parameters of ``fn`` (a class: its ``__init__``) whose default is a number (``int`` or ``float``, not
    ``bool``): the settings a test expects :func:`checked` to cover."""
    target = fn.__init__ if isinstance(fn, type) else fn  # type: ignore[misc]
    out = []
    for name, p in inspect.signature(target).parameters.items():
        d = p.default
        if isinstance(d, numbers.Real) and not isinstance(d, bool):
            out.append(name)
    return out


__all__ = [
    "COUNT",
    "FINITE",
    "NON_NEGATIVE",
    "NON_NEGATIVE_INT",
    "OPTIONAL_COUNT",
    "OPEN_UNIT",
    "POSITIVE",
    "Pair",
    "PROBABILITY",
    "Number",
    "check",
    "checked",
    "declared_checks",
    "numeric_parameters",
]
