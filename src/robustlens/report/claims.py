"""The paper's claims and their verdicts on measured numbers.

A report section declares the claims it can test (:class:`PairClaim` compares the model with role ``"robust"``
against the one with role ``"standard"``; :class:`ModelClaim` tests one model's numbers against a stated rule). After
every section has run, each claim is judged on the sections' headline numbers (:meth:`Claim.judge`) and gives one
:class:`Verdict` per model or pair:

- ``"holds"`` / ``"does not hold"``: the rule applied to finite numbers of models fit to be judged;
- ``"cannot be judged"``: a model is near chance, raises a gradient-masking flag (for claims whose numbers come from
  gradients), has no clean accuracy, the section failed, or a number the rule needs is not finite; the reason says
  which;
- ``"not tested"``: the report cannot test it (no standard/robust pair, or the section does not apply).

A model's fitness to be judged is a list of :class:`Gate` objects the sections raise about it (the clean section:
near chance; the sanity section: gradient-masking flags). The claims of the paper are those of Ortiz-Jimenez, Modas,
Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and Improving Deep Learning through
Adversarial Robustness", Proc. IEEE 2021.

>>> claim = PairClaim(key="margins", statement="adversarial training moves the boundary away from the data",
...                   paper="Sec. II-D", measure="median_l2", label="median L2 distance", robust_larger=True)
>>> [v.status for v in claim.judge("robustness", [Evidence("std", "standard", {"median_l2": 1.5}),
...                                               Evidence("at", "robust", {"median_l2": 2.1})])]
['holds']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..results import Result
from .text import Headline, finite, fmt, nonfinite_word

HOLDS = "holds"
FAILS = "does not hold"
UNJUDGED = "cannot be judged"
UNTESTED = "not tested"
VERDICT_STATUSES = (HOLDS, FAILS, UNJUDGED, UNTESTED)
ROLE_HINT = ("give the models the roles 'standard' and 'robust' (ModelEntry.role in Python, --roles on the command "
             "line)")


@dataclass(frozen=True)
class Gate:
    """Why a model's numbers cannot be judged against the paper's claims.

    Attributes:
        reason: a clause about the model, e.g. ``"is near chance (clean accuracy 10.0%, chance 10.0%)"``.
        gradient_only: the reason concerns gradients (gradient masking): it blocks only claims whose numbers are
            computed from gradients (:attr:`Claim.trusts_gradients`).
    """

    reason: str
    gradient_only: bool = False


@dataclass(frozen=True)
class Evidence:
    """What one model brings to the claims of one section.

    Attributes:
        name, role: the model's display name and role (``"standard"``, ``"robust"`` or ``""``).
        headline: the section's headline numbers for this model; ``None`` when the section has none.
        missing: why there are none (the section's note).
        skipped: the section does not apply to this model or plan (its claims are then not tested).
        gates: the reasons this model cannot be judged (raised by any section about it).
    """

    name: str
    role: str
    headline: Headline | None
    missing: str = ""
    skipped: bool = False
    gates: tuple[Gate, ...] = ()

    def blockers(self, trusts_gradients: bool) -> list[str]:
        return [g.reason for g in self.gates if trusts_gradients or not g.gradient_only]


@dataclass
class Verdict(Result):
    """The verdict of one claim on one model or pair.

    Attributes:
        section, claim: the section key and the claim key.
        statement, paper: the claim and where the paper makes it.
        subject: the model, or ``"at (robust) vs std (standard)"`` for a pair.
        status: ``"holds"``, ``"does not hold"``, ``"cannot be judged"`` or ``"not tested"``.
        measured: the numbers the verdict was computed from, in words (finite numbers only).
        rule: how the verdict is computed from them.
        reason: why the claim cannot be judged or was not tested.
        values: the numbers themselves, by headline key.
        sentence: the verdict as one sentence.
    """

    section: str
    claim: str
    statement: str
    paper: str
    subject: str
    status: str
    measured: str = ""
    rule: str = ""
    reason: str = ""
    values: dict[str, float] = field(default_factory=dict)
    sentence: str = ""

    @property
    def judged(self) -> bool:
        """Whether the claim was tested (holds, does not hold, or cannot be judged)."""
        return self.status != UNTESTED


@dataclass(frozen=True, kw_only=True)
class Claim(ABC):
    """A claim of the paper that a section's numbers can test.

    Attributes:
        key: identifier, unique within the section.
        statement: the claim, as a clause ("adversarial training moves the boundary away from the data").
        paper: where the paper makes it ("Sec. II-D").
        trusts_gradients: its numbers come from gradients (attacks, Hessians), so a gradient-masking flag on a model
            makes it impossible to judge on that model.
        unjudgeable: ``headline -> reason``: why one model's numbers cannot decide the claim although they are
            finite (e.g. a radius beyond what the sample count can certify); empty when they can.
    """

    key: str
    statement: str
    paper: str
    trusts_gradients: bool = True
    unjudgeable: Callable[[Headline], str] | None = None

    @abstractmethod
    def rule_text(self) -> str:
        """How the verdict is computed, as a clause ("it holds when ...")."""

    @abstractmethod
    def judge(self, section: str, evidence: Sequence[Evidence]) -> list[Verdict]:
        """The verdicts of this claim on the models of a report (one per model or pair)."""

    def verdict(self, section: str, subject: str, status: str, *, measured: str = "", reason: str = "",
                values: Mapping[str, float] | None = None) -> Verdict:
        head = f"The paper's claim that {self.statement} ({self.paper}) {status} for {subject}"
        tail = f"{measured}; {self.rule_text()}" if status in (HOLDS, FAILS) else reason
        vals = {k: float(v) for k, v in (values or {}).items()}
        return Verdict(section=section, claim=self.key, statement=self.statement, paper=self.paper, subject=subject,
                       status=status, measured=measured, rule=self.rule_text(), reason=reason, values=vals,
                       sentence=f"{head}: {tail}.")

    def _unfit(self, section: str, subject: str, evidence: Sequence[Evidence]) -> Verdict | None:
        """A "not tested" / "cannot be judged" verdict when a model lacks numbers or is unfit to be judged."""
        for e in evidence:
            if e.headline is None and e.skipped:
                return self.verdict(section, subject, UNTESTED, reason=f"the section does not apply to {e.name} "
                                    f"({e.missing})")
        for e in evidence:
            if e.headline is None:
                return self.verdict(section, subject, UNJUDGED, reason=f"the section has no numbers for {e.name} "
                                    f"({e.missing or 'it was not computed'})")
        reasons = [f"{e.name} {r}" for e in evidence for r in e.blockers(self.trusts_gradients)]
        if self.unjudgeable is not None:
            reasons += [r for e in evidence if e.headline is not None and (r := self.unjudgeable(e.headline))]
        if reasons:
            return self.verdict(section, subject, UNJUDGED, reason="; ".join(reasons))
        return None


def _who(e: Evidence) -> str:
    """A model's name with its role when the name does not say it (``"at (robust)"``, ``"robust"``)."""
    return e.name if e.name == e.role or not e.role else f"{e.name} ({e.role})"


def _nonfinite(values: Mapping[str, tuple[str, float]]) -> str:
    """``"the median L2 distance of std is unbounded"`` for every non-finite value (empty when all are finite)."""
    return "; ".join(f"the {label} is {nonfinite_word(v)}" for label, v in values.values() if not finite(v))


@dataclass(frozen=True, kw_only=True)
class PairClaim(Claim):
    """A claim about adversarial training: the robust model's ``measure`` is larger (``robust_larger``) or smaller
    than the standard model's. Needs one model with role ``"standard"`` and one with role ``"robust"``.

    Attributes:
        measure: the headline key compared.
        label: what it is, in words ("median L2 distance to the boundary").
        robust_larger: the direction the paper claims.
        kind: how the numbers are written (``"num"``, ``"pct"``, ``"count"``).
    """

    measure: str
    label: str
    robust_larger: bool
    kind: str = "num"

    def rule_text(self) -> str:
        word = "larger" if self.robust_larger else "smaller"
        return f"it holds when the robust model's {self.label} is {word} than the standard model's"

    def judge(self, section: str, evidence: Sequence[Evidence]) -> list[Verdict]:
        by_role = {e.role: e for e in evidence if e.role}
        std, rob = by_role.get("standard"), by_role.get("robust")
        if std is None or rob is None:
            return [self.verdict(section, "these models", UNTESTED,
                                 reason=f"it compares a standard and an adversarially trained model: {ROLE_HINT}")]
        subject = f"{_who(rob)} vs {_who(std)}"
        unfit = self._unfit(section, subject, [rob, std])
        if unfit is not None:
            return [unfit]
        assert rob.headline is not None and std.headline is not None
        a, b = float(rob.headline.get(self.measure, float("nan"))), float(std.headline.get(self.measure,
                                                                                              float("nan")))
        values = {f"robust_{self.measure}": a, f"standard_{self.measure}": b}
        bad = _nonfinite({"r": (f"{self.label} of {rob.name}", a), "s": (f"{self.label} of {std.name}", b)})
        if bad:
            return [self.verdict(section, subject, UNJUDGED, reason=bad, values=values)]
        holds = a > b if self.robust_larger else a < b
        measured = f"{self.label} {fmt(a, self.kind)} for {rob.name} vs {fmt(b, self.kind)} for {std.name}"
        return [self.verdict(section, subject, HOLDS if holds else FAILS, measured=measured, values=values)]


@dataclass(frozen=True, kw_only=True)
class ModelClaim(Claim):
    """A claim about any trained classifier, tested on each model's own numbers.

    Attributes:
        measures: ``(headline key, label)`` of every number the rule reads (all must be finite).
        test: ``headline -> bool``: whether the claim holds.
        rule: how ``test`` decides, as a clause ("it holds when ...").
        measured: ``headline -> str``: the numbers in words (called only when they are finite).
    """

    measures: tuple[tuple[str, str], ...]
    test: Callable[[Headline], bool]
    rule: str
    measured: Callable[[Headline], str]

    def rule_text(self) -> str:
        return self.rule

    def judge(self, section: str, evidence: Sequence[Evidence]) -> list[Verdict]:
        out = []
        for e in evidence:
            unfit = self._unfit(section, e.name, [e])
            if unfit is not None:
                out.append(unfit)
                continue
            assert e.headline is not None
            h = e.headline
            values = {k: float(h.get(k, float("nan"))) for k, _ in self.measures}
            bad = _nonfinite({k: (label, values[k]) for k, label in self.measures})
            if bad:
                out.append(self.verdict(section, e.name, UNJUDGED, reason=bad, values=values))
                continue
            status = HOLDS if self.test(h) else FAILS
            out.append(self.verdict(section, e.name, status, measured=self.measured(h), values=values))
        return out


def tally(verdicts: Sequence[Verdict]) -> dict[str, int]:
    """How many verdicts have each status."""
    return {s: sum(v.status == s for v in verdicts) for s in VERDICT_STATUSES}


def summary(verdicts: Sequence[Verdict]) -> str:
    """``"5 of 9 claims hold (3 do not hold, 1 cannot be judged)"``, over the tested claims."""
    t = tally(verdicts)
    n = t[HOLDS] + t[FAILS] + t[UNJUDGED]
    if n == 0:
        return "no claim of the paper could be tested on these models"
    rest = [f"{t[FAILS]} {'does' if t[FAILS] == 1 else 'do'} not hold"] if t[FAILS] else []
    rest += [f"{t[UNJUDGED]} cannot be judged"] if t[UNJUDGED] else []
    rest += [f"{t[UNTESTED]} not tested"] if t[UNTESTED] else []
    head = f"{t[HOLDS]} of {n} claims hold" if n != 1 else f"{t[HOLDS]} of 1 claim holds"
    return head + (f" ({', '.join(rest)})" if rest else "")


def claims_markdown(verdicts: Sequence[Verdict]) -> str:
    """The verdicts as a Markdown table (claim, paper, subject, measured numbers, verdict): the rows of the docs'
    claim tables."""
    lines = ["| claim | paper | model(s) | measured | verdict |", "|---|---|---|---|---|"]
    for v in verdicts:
        cell = v.measured if v.status in (HOLDS, FAILS) else v.reason
        status = f"**{v.status}**" if v.status in (HOLDS, FAILS) else v.status
        lines.append(f"| {v.statement} | {v.paper} | {v.subject} | {cell.replace('|', '/')} | {status} |")
    return "\n".join(lines)


__all__ = [
    "FAILS",
    "HOLDS",
    "ROLE_HINT",
    "UNJUDGED",
    "UNTESTED",
    "VERDICT_STATUSES",
    "Claim",
    "Evidence",
    "Gate",
    "ModelClaim",
    "PairClaim",
    "Verdict",
    "claims_markdown",
    "summary",
    "tally",
]
