"""Every attack by name, for the command line and configuration files: ``make_attack("pgd", norm="Linf", eps=0.3)``.

Minimal-norm attacks (paper eq. 8-9) take no eps; eps-bounded attacks (eq. 10-11) need one. ``steps`` sets each
attack's main iteration count (Square: queries; DeepFool and SparseFool: maximum iterations); ``None`` keeps the
attack's default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from ..classifier import Classifier
from ..errors import ConfigError
from .apgd import APGD
from .autoattack import autoattack
from .base import AttackResult, TargetSpec
from .cw import CarliniWagner
from .ddn import DDN
from .deepfool import DeepFool
from .fab import FAB
from .fgsm import FGSM
from .fmn import FMN
from .norms import INF, norm_name, parse_norm
from .pgd import PGD
from .sparsefool import SparseFool
from .square import Square


class AttackRunner(Protocol):
    """What :func:`make_attack` returns: an :class:`Attack`, or the AutoAttack ensemble with the same call."""

    @property
    def name(self) -> str: ...

    def __call__(
        self,
        clf: Classifier,
        x: Tensor,
        y: Tensor | Sequence[int] | None = None,
        *,
        target: TargetSpec = None,
        seed: int = 0,
        indices: Tensor | Sequence[int] | None = None,
    ) -> AttackResult: ...


class AutoAttackRunner:
    """The standard AutoAttack ensemble (:func:`robustlens.attacks.autoattack.autoattack`) behind an attack's call."""

    name = "autoattack"

    def __init__(self, norm: float | str, eps: float, progress: bool = False) -> None:
        self.p = parse_norm(norm)
        self.eps = float(eps)
        self.progress = progress
        self.settings: dict[str, Any] = {"norm": norm_name(self.p), "eps": self.eps, "version": "standard"}

    def __call__(
        self,
        clf: Classifier,
        x: Tensor,
        y: Tensor | Sequence[int] | None = None,
        *,
        target: TargetSpec = None,
        seed: int = 0,
        indices: Tensor | Sequence[int] | None = None,
    ) -> AttackResult:
        if target is not None:
            raise ConfigError("AutoAttack is untargeted (its APGD-T and FAB-T stages choose their own targets)")
        return autoattack(clf, x, y, norm=self.p, eps=self.eps, seed=seed, indices=indices, progress=self.progress)


@dataclass(frozen=True)
class AttackSpec:
    """How to build one attack by name."""

    minimal: bool
    norms: tuple[float, ...]
    build: Callable[[float, float | None, int | None], AttackRunner]
    summary: str


def _kw(steps: int | None, key: str = "steps") -> dict[str, Any]:
    return {} if steps is None else {key: int(steps)}


def _need_eps(eps: float | None) -> float:
    assert eps is not None
    return eps


ATTACKS: dict[str, AttackSpec] = {
    "deepfool": AttackSpec(True, (1.0, 2.0, INF), lambda p, e, s: DeepFool(p, **_kw(s, "max_iter")),
                           "DeepFool, minimal L2/Linf/Lp by iterated linearisation"),
    "sparsefool": AttackSpec(True, (1.0,), lambda p, e, s: SparseFool(**_kw(s, "max_iter")),
                             "SparseFool, sparse minimal L1 within the box"),
    "cw": AttackSpec(True, (2.0,), lambda p, e, s: CarliniWagner(**_kw(s)),
                     "Carlini-Wagner L2 with binary search over c"),
    "fmn": AttackSpec(True, (0.0, 1.0, 2.0, INF), lambda p, e, s: FMN(p, **_kw(s)),
                      "Fast Minimum-Norm, L0/L1/L2/Linf"),
    "fab": AttackSpec(True, (1.0, 2.0, INF), lambda p, e, s: FAB(p, **_kw(s)), "Fast Adaptive Boundary"),
    "ddn": AttackSpec(True, (2.0,), lambda p, e, s: DDN(**_kw(s)), "Decoupled Direction and Norm, L2"),
    "fgsm": AttackSpec(False, (1.0, 2.0, INF), lambda p, e, s: FGSM(p, _need_eps(e)), "one gradient step"),
    "pgd": AttackSpec(False, (1.0, 2.0, INF), lambda p, e, s: PGD(p, _need_eps(e), **_kw(s)),
                      "projected gradient descent with a random start"),
    "apgd-ce": AttackSpec(False, (2.0, INF), lambda p, e, s: APGD(p, _need_eps(e), **_kw(s)),
                          "Auto-PGD on the cross-entropy"),
    "apgd-dlr": AttackSpec(False, (2.0, INF), lambda p, e, s: APGD(p, _need_eps(e), loss="dlr", **_kw(s)),
                           "Auto-PGD on the DLR margin"),
    "square": AttackSpec(False, (2.0, INF), lambda p, e, s: Square(p, _need_eps(e), **_kw(s, "queries")),
                         "Square, score-based (no gradients); steps = queries"),
    "autoattack": AttackSpec(False, (2.0, INF), lambda p, e, s: AutoAttackRunner(p, _need_eps(e)),
                             "the standard AutoAttack ensemble (steps ignored)"),
}
DEFAULT_NORMS = {"sparsefool": 1.0, "cw": 2.0, "ddn": 2.0}


def attack_key(name: str) -> str:
    """The registry key of an attack name (case, ``_`` and a few aliases forgiven)."""
    key = name.strip().lower().replace("_", "-")
    key = {"carlini-wagner": "cw", "cw-l2": "cw", "apgd": "apgd-ce", "aa": "autoattack"}.get(key, key)
    if key not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}")
    return key


def make_attack(
    name: str, norm: float | str | None = None, eps: float | None = None, steps: int | None = None
) -> AttackRunner:
    """Build an attack by name (see :data:`ATTACKS`); raises :class:`ConfigError` naming the valid choices."""
    key = attack_key(name)
    spec = ATTACKS[key]
    p = parse_norm(norm) if norm is not None else DEFAULT_NORMS.get(key, INF if not spec.minimal else 2.0)
    if p not in spec.norms:
        raise ConfigError(f"{key} supports the norms {', '.join(norm_name(q) for q in spec.norms)}, "
                          f"not {norm_name(p)}")
    if spec.minimal and eps is not None:
        raise ConfigError(f"{key} is a minimal-norm attack: it takes no eps (its result answers every eps); "
                          "drop --eps or use an eps-bounded attack such as pgd")
    if not spec.minimal and eps is None:
        raise ConfigError(f"{key} is an eps-bounded attack: give its budget, e.g. eps=8/255 (--eps 0.0314)")
    if steps is not None and steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    return spec.build(p, eps, steps)


def is_minimal(name: str) -> bool:
    """Whether the named attack is minimal-norm (eq. 8-9) rather than eps-bounded (eq. 10-11)."""
    return ATTACKS[attack_key(name)].minimal


__all__ = ["ATTACKS", "AttackRunner", "AttackSpec", "AutoAttackRunner", "attack_key", "is_minimal", "make_attack"]
