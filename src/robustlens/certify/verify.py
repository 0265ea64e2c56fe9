"""Verified accuracy at eps by a named bound method, beside the attacked upper bound of robust accuracy.

For each radius, every sample is one of: *verified* (the method proves ``z_y > z_k`` on the whole ball: the paper's
certified robustness, defined after eq. (12)), *attacked* (PGD found a misclassified point of the ball, or the clean
input is misclassified), or *unknown* (neither). Verified accuracy is a lower bound of the robust accuracy at eps,
``1 - attacked`` an upper bound; the unknown share is the gap between what is proven and what is broken.

Example:
    >>> res = verify(Classifier(net), x, y, eps=[0.05, 0.1], norm="inf", method="crown", seed=0)
    >>> res.verified_accuracy, res.attacked_accuracy_upper
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..analyses import register_analysis
from ..checks import COUNT, NON_NEGATIVE, check, checked
from ..classifier import Classifier
from ..errors import ConfigError
from ..norms import norm_name
from ..registry import Registry
from ..results import Result
from .crown import crown_bounds
from .ibp import interval_bounds
from .problem import IntervalBounds, threat_model

BoundMethod = Callable[[Classifier, Tensor, float, float, Tensor], IntervalBounds]
METHODS: Registry[BoundMethod] = Registry("bound method")
METHODS.add("ibp", lambda clf, x, eps, p, y: interval_bounds(clf, x, eps, p, y), aliases=("interval",))
METHODS.add("crown", lambda clf, x, eps, p, y: crown_bounds(clf, x, eps, p, y))
METHODS.add("alpha-crown", lambda clf, x, eps, p, y: crown_bounds(clf, x, eps, p, y, alpha=True),
            aliases=("alpha_crown", "alphacrown"))


@dataclass
class VerifyResult(Result):
    """Output of :func:`verify`: per radius (rows) and sample (columns), verified and attacked flags.

    Attributes:
        method: the bound method; eps, p: the radii and the norm.
        verified: ``(E, N)`` bool, the label is proven constant on the ball.
        attacked: ``(E, N)`` bool, a misclassified point of the ball is known (``None`` without the attack).
        clean_correct: ``(N,)`` bool.
        seconds: time of the bound method at each radius.
    """

    method: str
    eps: list[float]
    p: float
    verified: Tensor
    attacked: Tensor | None
    clean_correct: Tensor
    seconds: list[float]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def verified_accuracy(self) -> list[float]:
        return [float(v) for v in self.verified.double().mean(1)]

    @property
    def attacked_accuracy_upper(self) -> list[float] | None:
        """``1 -`` the attacked share: an upper bound of the robust accuracy (``None`` without the attack)."""
        return None if self.attacked is None else [float(v) for v in 1 - self.attacked.double().mean(1)]

    def counts(self) -> list[dict[str, int | float]]:
        """``{"eps", "verified", "attacked", "unknown"}`` sample counts per radius."""
        out: list[dict[str, int | float]] = []
        for i, e in enumerate(self.eps):
            v = int(self.verified[i].sum())
            a = int(self.attacked[i].sum()) if self.attacked is not None else 0
            out.append({"eps": e, "verified": v, "attacked": a, "unknown": self.verified.shape[1] - v - a})
        return out


@checked(steps=COUNT)
def verify(
    clf: Classifier,
    x: Tensor,
    y: Tensor | Sequence[int],
    eps: float | Sequence[float],
    norm: float | str = "inf",
    method: str = "crown",
    *,
    attack: bool = True,
    steps: int = 40,
    seed: int = 0,
) -> VerifyResult:
    """Verified accuracy by ``method`` (``"ibp"``, ``"crown"``, ``"alpha-crown"``) at each radius, and PGD's
    attacked upper bound of robust accuracy (``attack``: ``steps`` iterations, seeded by ``seed``).

    A sample both verified and attacked would be a contradiction (an unsound bound or a wrong attack): it is
    an error, never a count.
    """
    if not isinstance(clf, Classifier):
        raise ConfigError(f"verify needs a robustlens Classifier, got {type(clf).__name__}; wrap the model")
    fn = METHODS.get(method)
    name = METHODS.entry(method).name
    radii = [float(eps)] if isinstance(eps, (int, float)) else [float(e) for e in eps]
    if not radii:
        raise ConfigError("verify needs at least one eps")
    radii = [check(e, "eps", NON_NEGATIVE, "verify") for e in radii]
    _, p = threat_model(radii[0], norm)
    x, yy = clf.validate(x, torch.as_tensor(y))
    assert yy is not None
    with torch.no_grad():
        clean_correct = clf.predict(x, validate=False) == yy
    verified, attacked, seconds = [], [], []
    for e in radii:
        t0 = time.perf_counter()
        b = fn(clf, x, e, p, yy)
        seconds.append(time.perf_counter() - t0)
        assert b.certified is not None
        verified.append(b.certified.cpu() & clean_correct.cpu())
        if attack:
            from ..attacks import PGD

            res = PGD(norm=p, eps=e, steps=steps)(clf, x, yy, seed=seed)
            broken = (res.success | ~res.clean_correct).cpu()
            if bool((broken & verified[-1]).any()):
                raise ConfigError(  # pragma: no cover - a soundness failure, kept loud
                    f"{name} verified a sample that PGD broke at eps {e:g}: the bound is unsound for this model")
            attacked.append(broken)
    return VerifyResult(method=name, eps=radii, p=p, verified=torch.stack(verified),
                        attacked=torch.stack(attacked) if attack else None, clean_correct=clean_correct.cpu(),
                        seconds=seconds, settings={"norm": norm_name(p), "steps": steps, "seed": seed,
                                                   "attack": attack})


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> VerifyResult:
    return verify(clf, x, y, [0.01, 0.05], "inf", "alpha-crown", attack=False, seed=seed)


register_analysis("verify", kind="certify", smoke=_smoke, needs_gradients=False,
                  summary="verified accuracy at eps by IBP, CROWN or alpha-CROWN, beside PGD's upper bound")(verify)

__all__ = ["METHODS", "VerifyResult", "verify"]
