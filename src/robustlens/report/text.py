"""Numbers in words for the report's sentences: percentages, short numbers, ratios and comparisons.

A non-finite value never reaches a sentence as ``nan`` or ``inf``: :func:`num` and :func:`pct` write it in words
(``"not measured"``, ``"unbounded"``), :func:`ratio` is ``None`` unless both numbers are finite and the reference is
positive, and :func:`versus` states a comparison only between finite numbers. :func:`check_words` is the test that
a sentence obeys this.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

NOT_MEASURED = "not measured"
UNBOUNDED = "unbounded"

Headline = Mapping[str, float]


def finite(v: float | None) -> bool:
    """Whether ``v`` is a finite number."""
    return v is not None and math.isfinite(float(v))


def nonfinite_word(v: float) -> str:
    """``"not measured"`` for NaN, ``"unbounded"`` for +inf, ``"-unbounded"`` for -inf."""
    if math.isnan(v):
        return NOT_MEASURED
    return UNBOUNDED if v > 0 else f"-{UNBOUNDED}"


def pct(v: float) -> str:
    """``0.123`` -> ``"12.3%"`` (words for a non-finite value)."""
    return f"{100 * v:.1f}%" if finite(v) else nonfinite_word(float(v))


def num(v: float) -> str:
    """Three significant digits (whole numbers from 1000 up; words for a non-finite value)."""
    v = float(v)
    if not finite(v):
        return nonfinite_word(v)
    if v == 0:
        return "0"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def count(v: float) -> str:
    """A count: ``12.0`` -> ``"12"`` (words for a non-finite value)."""
    return str(int(round(float(v)))) if finite(v) else nonfinite_word(float(v))


FORMATS = {"pct": pct, "num": num, "count": count}


def fmt(v: float, kind: str) -> str:
    """Format a headline number as ``"pct"``, ``"num"`` or ``"count"``."""
    return FORMATS[kind](v)


def ratio(a: float, b: float) -> float | None:
    """``a / b`` when both are finite and ``b > 0``, else ``None``."""
    if not (finite(a) and finite(b)) or b <= 0:
        return None
    return float(a) / float(b)


def ratio_phrase(a: float, b: float) -> str:
    """``a`` relative to ``b`` as ``"2.4x"``; empty when the ratio is undefined (see :func:`ratio`)."""
    r = ratio(a, b)
    return "" if r is None else f"{r:.3g}x"


def versus(name: str, h: Headline, ref: str, h0: Headline, key: str, what: str, kind: str = "num") -> str:
    """``"b's <what> is 2.4x a's (x vs y)"``, or the same without the ratio when it is undefined, or a clause saying
    which of the two numbers is missing."""
    a, b = float(h.get(key, math.nan)), float(h0.get(key, math.nan))
    if not finite(a) or not finite(b):
        gone = [f"{n}'s is {nonfinite_word(v)}" for n, v in ((name, a), (ref, b)) if not finite(v)]
        return f"{name}'s {what} cannot be compared with {ref}'s ({' and '.join(gone)})"
    r = ratio_phrase(a, b)
    if kind == "pct":
        d = 100 * (a - b)
        if abs(d) < 0.05:
            return f"{name}'s {what} equals {ref}'s ({pct(a)})"
        return (f"{name}'s {what} is {abs(d):.1f} points {'higher' if d > 0 else 'lower'} than {ref}'s "
                f"({pct(a)} vs {pct(b)})")
    if r:
        return f"{name}'s {what} is {r} {ref}'s ({fmt(a, kind)} vs {fmt(b, kind)})"
    return f"{name}'s {what} is {fmt(a, kind)} against {fmt(b, kind)} for {ref}"


def compare_all(hs: Sequence[tuple[str, Headline]], key: str, what: str, kind: str = "num") -> str:
    """:func:`versus` for every model against the first, joined into one sentence."""
    (ref, h0), others = hs[0], hs[1:]
    return "; ".join(versus(name, h, ref, h0, key, what, kind) for name, h in others) + "."


def finite_median(t: Tensor | np.ndarray | Sequence[float]) -> float:
    """Median of the finite entries (``nan`` when there are none)."""
    if isinstance(t, Tensor):
        a = t.detach().cpu().double().numpy().ravel()
    else:
        a = np.asarray(t, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def nonfinite_fraction(t: Tensor) -> float:
    """Fraction of entries that are not finite (0 for an empty tensor)."""
    return float((~torch.isfinite(t)).double().mean()) if t.numel() else 0.0


_NONFINITE = re.compile(r"(?<![A-Za-z])(nan|inf|-inf|infinity)(?![A-Za-z])", re.IGNORECASE)


def check_words(sentence: str) -> list[str]:
    """The non-finite number tokens (``nan``, ``inf``) a sentence contains: empty for a sentence fit to print."""
    return [m.group(0) for m in _NONFINITE.finditer(sentence)]


__all__ = [
    "NOT_MEASURED",
    "UNBOUNDED",
    "Headline",
    "check_words",
    "compare_all",
    "count",
    "finite",
    "nonfinite_fraction",
    "finite_median",
    "fmt",
    "nonfinite_word",
    "num",
    "pct",
    "ratio",
    "ratio_phrase",
    "versus",
]
