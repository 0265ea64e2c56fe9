"""The shape of a report section: one typed class per topic, registered with :func:`register_section`.

A section computes one typed :class:`~robustlens.results.Result` from a classifier with the library's public
functions, reduces it to headline numbers, says one sentence per model and one comparing the models, declares the
paper's claims its numbers test (:mod:`robustlens.report.claims`), and draws its figures with the library's plot
functions. ``Section[R]`` is generic in its result type ``R``: the framework checks once that ``compute`` returned
an ``R`` (and that a reloaded result is one), so the methods receive ``R`` without downcasts.

A section in outline (``docs/design.md``, "Adding an analysis", has the whole of a real one)::

    @register_section("noise-flips", order=95)
    class NoiseFlipsSection(Section[NoiseFlips]):
        title = "Decisions changed by Gaussian noise"
        paper = "eq. (7)"
        rows = (Row("flip_rate", "decisions changed by noise of L2 norm {threat_l2}", "pct"),)
        claims = (ModelClaim(key="noise-robust", ...),)

        def compute(self, clf, data, plan, ctx):       # -> NoiseFlips, from the library's public functions
        def headline(self, r):                         # -> {"flip_rate": ...}
        def sentence(self, h):                         # -> one sentence, numbers through robustlens.report.text
        def figures(self, named, plan):                # -> [Figure], drawn by the library's plot function
"""

from __future__ import annotations

import importlib
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

from ..classifier import Classifier
from ..results import Result
from .claims import Claim, Gate
from .data import ReportData
from .figures import Figure
from .plan import ReportPlan
from .registry import SECTIONS, load_sections
from .text import Headline, num

R = TypeVar("R", bound=Result)
S = TypeVar("S", bound="type[Section[Any]]")


@dataclass(frozen=True)
class RunContext:
    """How a section is run: the seed of every random choice, and whether to show progress bars (passed on to the
    library functions a section calls)."""

    seed: int = 0
    progress: bool = False


class _PlanWords(dict[str, str]):
    def __init__(self, plan: ReportPlan) -> None:
        super().__init__()
        self.plan = plan

    def __missing__(self, key: str) -> str:
        value = getattr(self.plan, key)
        return num(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class Row:
    """A row of the headline table: a headline key, its label and how it is written.

    ``label`` is a string whose ``{field}`` placeholders are filled from the plan (``"robust accuracy at Linf eps
    {threat_linf}"``), or a function of the plan; either way the table states the threat model of every number.
    """

    key: str
    label: str | Callable[[ReportPlan], str]
    kind: str = "num"

    def text(self, plan: ReportPlan) -> str:
        return self.label(plan) if callable(self.label) else self.label.format_map(_PlanWords(plan))


class Section(ABC, Generic[R]):
    """One section of the report, computing a result of type ``R``.

    Class attributes:
        key, order: set by :func:`register_section` (identifier and page position).
        title, paper: the heading and the equations / figures of the paper it reproduces.
        requires: ``"module"`` or ``"module:attribute"`` entries that must import for the section to run (else it
            is shown as not available in this version).
        rows: the headline numbers it adds to the headline table.
        claims: the paper's claims its numbers test.
        result_type: ``R`` (read from ``Section[R]``).
        required_for_verdicts: without this section's numbers no claim can be judged (the clean section: a model's
            accuracy decides whether it is fit to be judged).
    """

    key: ClassVar[str] = ""
    order: ClassVar[int] = 1000
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    rows: ClassVar[tuple[Row, ...]] = ()
    claims: ClassVar[tuple[Claim, ...]] = ()
    result_type: ClassVar[type[Result]] = Result
    required_for_verdicts: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            args = typing.get_args(base)
            if args and isinstance(args[0], type) and issubclass(args[0], Result):
                cls.result_type = args[0]

    # ------------------------------------------------------------------ what a section defines
    def applies(self, plan: ReportPlan) -> str:
        """Empty when the section applies to ``plan``, else why it is skipped (with the setting that enables it)."""
        return ""

    @abstractmethod
    def compute(self, clf: Classifier, data: ReportData, plan: ReportPlan, ctx: RunContext) -> R:
        """The section's result for one model, computed with the library's public functions."""

    @abstractmethod
    def headline(self, result: R) -> dict[str, float]:
        """The numbers the sentences, the headline table and the claims read, by name."""

    @abstractmethod
    def sentence(self, h: Headline) -> str:
        """One sentence about one model, computed from its headline numbers (no verdict: the claims give those)."""

    def compare(self, hs: Sequence[tuple[str, Headline]]) -> str:
        """One sentence comparing the models (the first is the reference); empty for none."""
        return ""

    @abstractmethod
    def figures(self, named: Sequence[tuple[str, R]], plan: ReportPlan) -> list[Figure]:
        """The figures of every model's result, drawn with the library's plot functions."""

    def gates(self, h: Headline, num_classes: int) -> list[Gate]:
        """Reasons, read from this section's numbers, why a model cannot be judged on the paper's claims."""
        return []

    # ------------------------------------------------------------------ framework
    def missing(self) -> list[str]:
        """The required modules or names that cannot be imported (empty when the section can run)."""
        out = []
        for req in self.requires:
            mod, _, attr = req.partition(":")
            try:
                m = importlib.import_module(mod)
                if attr:
                    getattr(m, attr)
            except (ImportError, AttributeError):
                out.append(req)
        return out

    def typed(self, result: object) -> R:
        """``result`` as this section's result type; a ``TypeError`` naming both types otherwise."""
        if not isinstance(result, self.result_type):
            raise TypeError(f"section {self.key!r} expects a {self.result_type.__name__}, got "
                            f"{type(result).__name__}")
        return cast(R, result)


def register_section(key: str, *, order: int) -> Callable[[S], S]:
    """Class decorator: register a :class:`Section` subclass as report section ``key`` at page position ``order``."""

    def deco(cls: S) -> S:
        cls.key = key
        cls.order = order
        SECTIONS.add(key, cls, order=order, title=cls.title)
        return cls

    return deco


_INSTANCES: dict[str, Section[Any]] = {}


def get_section(key: str) -> Section[Any]:
    """The section registered as ``key`` (an unknown key is a ConfigError listing the choices)."""
    reg = load_sections() if key not in SECTIONS else SECTIONS
    k = reg.key(key)
    cls = cast("type[Section[Any]]", reg.get(k))
    inst = _INSTANCES.get(k)
    if inst is None or type(inst) is not cls:
        inst = _INSTANCES[k] = cls()
    return inst


__all__ = ["Row", "RunContext", "Section", "get_section", "register_section"]
