"""The worst-case corruption per image: the smallest strength of a corruption's continuous parameter that changes
the decision (paper Sec. IV-C1: adversarial robustness as a lower bound on robustness to corruptions).

A parametric corruption maps a strength ``t`` in ``[0, 1]`` to a parameter between the identity (``t = 0``) and
the benchmark's severity 5 (``t = 1``), along the scalar its severities vary (the noise level, the blur's sigma,
the brightness shift, the contrast factor, the fog's amplitude; for shot noise ``1 / photons``), with the image's
random draws held fixed (common random numbers, as :func:`robustlens.shift.corrupt` keys them by image). A grid
search over ``t`` finds, per image, the smallest ``t`` whose corrupted image is misclassified: the worst case over
the parameter, which bounds from below the accuracy of every fixed severity up to 5 (worst-case accuracy at
``t <= s`` is at most the accuracy at severity strength ``s``).

>>> r = worst_case_corruption(clf, x, y, corruptions=["contrast", "gaussian-noise"], grid=11)
>>> r.worst_case_accuracy(1.0)        # robust to every strength up to severity 5
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..analyses import register_analysis
from ..checks import COUNT, checked
from ..classifier import Classifier
from ..errors import ConfigError, InputError
from ..registry import Registry
from ..results import Result
from . import corruptions as C
from . import filters as K
from .severity import resolve_params, severity_params

#: ``(x, t, rng, params) -> corrupted``: a corruption at strength ``t`` in [0, 1] (0: the image itself).
Parametric = Callable[[Tensor, float, K.SampleStreams, str], Tensor]
PARAMETRIC: Registry[Parametric] = Registry("parametric corruption")


def _at(name: str, ref: str) -> object:
    return severity_params(name, 5, ref)


def _scaled(name: str, build: Callable[[object, float], object]) -> Parametric:
    fn = C.CORRUPTIONS.get(name).fn

    def run(x: Tensor, t: float, rng: K.SampleStreams, ref: str) -> Tensor:
        return x.clone() if t == 0 else fn(x, build(_at(name, ref), t), rng, ref)

    return run


PARAMETRIC.add("gaussian-noise", _scaled("gaussian-noise", lambda c, t: float(c) * t))  # type: ignore[arg-type]
PARAMETRIC.add("speckle-noise", _scaled("speckle-noise", lambda c, t: float(c) * t))  # type: ignore[arg-type]
PARAMETRIC.add("impulse-noise", _scaled("impulse-noise", lambda c, t: float(c) * t))  # type: ignore[arg-type]
PARAMETRIC.add("shot-noise", _scaled("shot-noise", lambda c, t: float(c) / t))  # type: ignore[arg-type]
PARAMETRIC.add("gaussian-blur", _scaled("gaussian-blur", lambda c, t: float(c) * t))  # type: ignore[arg-type]
PARAMETRIC.add("brightness", _scaled("brightness", lambda c, t: float(c) * t))  # type: ignore[arg-type]
PARAMETRIC.add("contrast", _scaled("contrast", lambda c, t: 1 - (1 - float(c)) * t))  # type: ignore[arg-type]
PARAMETRIC.add("fog", _scaled("fog", lambda c, t: (c[0] * t, c[1])))  # type: ignore[arg-type,index]


def corrupt_at(x: Tensor, name: str, strength: float, *, seed: int = 0, indices: Sequence[int] | None = None,
               params: str = "auto") -> Tensor:
    """``x`` under parametric corruption ``name`` at ``strength`` in [0, 1] (1 = the benchmark's severity 5),
    with the same per-image draws as :func:`robustlens.shift.corrupt` at every strength."""
    x = C.check_images(x)
    key = PARAMETRIC.key(name)
    if not 0 <= float(strength) <= 1:
        raise ConfigError(f"strength must be in [0, 1] (1 = severity 5), got {strength!r}")
    idx = list(range(x.shape[0])) if indices is None else [int(i) for i in indices]
    rng = K.SampleStreams(int(seed), idx, ("corruption", key))
    ref = resolve_params(params, x.shape[2], x.shape[3])
    return PARAMETRIC.get(key)(x.float(), float(strength), rng, ref).to(x.dtype)


@dataclass
class WorstCaseCorruption(Result):
    """Per image and corruption, the smallest strength that changes the decision.

    Attributes:
        corruptions: the parametric corruptions searched.
        strengths: ``(G,)`` the grid of strengths in [0, 1] (1 = severity 5).
        breaking: ``(N, corruptions)`` the smallest grid strength whose corrupted image is misclassified (0 for an
            image misclassified clean, ``inf`` when none up to 1 is).
        fixed_accuracy: ``(corruptions, G)`` accuracy at each fixed strength (the average-case curve).
        clean_accuracy: accuracy on the clean images; params: severity table; seed: the seed.
    """

    corruptions: list[str]
    strengths: Tensor
    breaking: Tensor
    fixed_accuracy: Tensor
    clean_accuracy: float
    params: str
    seed: int = 0

    def worst_case_accuracy(self, strength: float = 1.0) -> Tensor:
        """``(corruptions,)`` fraction of images correct at every grid strength up to ``strength``."""
        return (self.breaking > strength).double().mean(0)


def _smoke(clf: Classifier, x: Tensor, y: Tensor, seed: int) -> WorstCaseCorruption:
    return worst_case_corruption(clf, x, y, corruptions=["contrast", "fog", "shot-noise"], grid=3, seed=seed)


@register_analysis("worst-case-corruption", kind="shift", needs_gradients=False, smoke=_smoke)
@checked(grid=COUNT)
def worst_case_corruption(clf: Classifier, x: Tensor, y: Tensor | None = None, *,
                          corruptions: Sequence[str] | None = None, grid: int = 21, params: str = "auto",
                          seed: int = 0, batch_size: int | None = None) -> WorstCaseCorruption:
    """The worst strength of each parametric corruption per image, by a grid search over ``grid`` strengths in
    (0, 1] (Sec. IV-C1; strengths as in the module docstring; the draws of each image fixed).

    >>> worst_case_corruption(clf, x, y, corruptions=["fog"], grid=21).worst_case_accuracy()
    """
    names = [PARAMETRIC.key(c) for c in (corruptions or list(PARAMETRIC))]
    if not names:
        raise ConfigError(f"corruptions must name at least one of {', '.join(PARAMETRIC)}")
    x, yv = clf.validate(x, None if y is None else torch.as_tensor(y))
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise InputError(f"common corruptions need grey or RGB images (N, C, H, W), got shape {tuple(x.shape)}")
    lo, hi = clf.bounds
    if not (torch.isfinite(torch.tensor([lo, hi])).all() and hi > lo):
        raise ConfigError(f"common corruptions need finite classifier bounds, got {clf.bounds}")
    bs = batch_size or clf.batch_size
    with clf.random_state(seed):
        clean_pred = clf.predict(x, batch_size=bs, validate=False)
    labels = clean_pred if yv is None else yv
    u = (x - lo) / (hi - lo)
    ts = torch.linspace(0, 1, grid + 1, dtype=torch.float64)[1:]
    n = x.shape[0]
    breaking = torch.full((n, len(names)), float("inf"), dtype=torch.float64)
    fixed = torch.zeros(len(names), grid, dtype=torch.float64)
    clean_ok = (clean_pred == labels).cpu()
    for i, c in enumerate(names):
        broken = ~clean_ok.clone()
        breaking[broken, i] = 0.0
        for j, t in enumerate(ts.tolist()):
            xc = corrupt_at(u, c, t, seed=seed, params=params) * (hi - lo) + lo
            with clf.random_state(seed):
                z = clf.decision_logits(xc, batch_size=bs)
            ok = (torch.isfinite(z).all(1) & (z.argmax(1) == labels)).cpu()
            fixed[i, j] = ok.double().mean()
            newly = ~ok & ~broken
            breaking[newly, i] = t
            broken |= ~ok
    ref = resolve_params(params, x.shape[2], x.shape[3])
    return WorstCaseCorruption(corruptions=names, strengths=ts, breaking=breaking, fixed_accuracy=fixed,
                               clean_accuracy=float(clean_ok.double().mean()), params=ref, seed=int(seed))


__all__ = ["PARAMETRIC", "WorstCaseCorruption", "corrupt_at", "worst_case_corruption"]
