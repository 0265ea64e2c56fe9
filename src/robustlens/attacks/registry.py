"""Every attack by name, for the command line, the report and configuration files:
``make_attack("pgd", norm="Linf", eps=0.3)``.

The names live in :data:`robustlens.attacks.base.ATTACKS`, registered beside each class
(``@ATTACKS.register("pgd", minimal=False, norms=(1.0, 2.0, INF), steps="steps")``); this module builds an attack
from a name and the command line's few common settings. Minimal-norm attacks (eq. 8-9 of Ortiz-Jimenez, Modas,
Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and Improving Deep Learning through
Adversarial Robustness", Proc. IEEE 2021) take no eps; eps-bounded attacks (eq. 10-11) need one. ``steps`` sets
each attack's main iteration count (the constructor argument named by its ``steps`` metadata: Square's queries,
DeepFool's and SparseFool's maximum iterations); ``None`` keeps the attack's default.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..checks import NON_NEGATIVE, OPTIONAL_COUNT, check
from ..errors import ConfigError
from ..norms import norm_name, parse_norm
from . import apgd, autoattack, cw, ddn, deepfool, fab, fgsm, fmn, pgd, sparsefool, square  # noqa: F401 - register
from .base import ATTACKS, Attack


def attack_key(name: str) -> str:
    """The registry key of an attack name (case, ``_`` and aliases forgiven); unknown names list the choices."""
    return ATTACKS.key(name)


def is_minimal(name: str) -> bool:
    """Whether the named attack is minimal-norm (eq. 8-9) rather than eps-bounded (eq. 10-11)."""
    return bool(ATTACKS.entry(name).meta["minimal"])


def default_norm(name: str) -> float:
    """The norm an attack runs in when none is given: Linf for eps-bounded attacks, L2 for minimal-norm ones, or
    the attack's only norm."""
    meta = ATTACKS.entry(name).meta
    norms = meta["norms"]
    if len(norms) == 1:
        return float(norms[0])
    preferred = 2.0 if meta["minimal"] else float("inf")
    return preferred if preferred in norms else float(norms[-1])


def make_attack(
    name: str, norm: float | str | None = None, eps: float | None = None, steps: int | None = None
) -> Attack:
    """Build an attack by name (see :data:`ATTACKS`); raises :class:`ConfigError` naming the valid choices."""
    entry = ATTACKS.entry(name)
    key, meta, cls = entry.name, entry.meta, entry.obj
    p = parse_norm(norm) if norm is not None else default_norm(key)
    if p not in meta["norms"]:
        raise ConfigError(f"{key} supports the norms {', '.join(norm_name(q) for q in meta['norms'])}, "
                          f"not {norm_name(p)}")
    if meta["minimal"] and eps is not None:
        raise ConfigError(f"{key} is a minimal-norm attack: it takes no eps (its result answers every eps); "
                          "drop --eps or use an eps-bounded attack such as pgd")
    if not meta["minimal"] and eps is None:
        raise ConfigError(f"{key} is an eps-bounded attack: give its budget, e.g. eps=8/255 (--eps 0.0314)")
    steps = check(steps, "steps", OPTIONAL_COUNT, key)
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = dict(meta.get("defaults", {}))
    if "norm" in params:
        kwargs["norm"] = p
    if eps is not None:
        kwargs["eps"] = check(eps, "eps", NON_NEGATIVE, key)
    if steps is not None and meta.get("steps"):
        kwargs[meta["steps"]] = steps
    return cls(**kwargs)


__all__ = ["ATTACKS", "attack_key", "default_norm", "is_minimal", "make_attack"]
