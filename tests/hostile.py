"""Models built to break the assumptions of robustness analysis, and what a correct answer to each looks like.

The matrix (tests/test_hostile.py) runs every registered attack (``robustlens.attacks.ATTACKS``) and every
registered analysis (``robustlens.analyses.load_all()``) on each model below and asks for a clear error (a
``RobustLensError``) or a result that is correct; a raw exception or a plausible number from a broken model fails.

Every model maps ``(N, 1, 4, 4)`` inputs in ``[0, 1]`` to 3 logits (a tiny smooth MLP underneath), so the whole
matrix stays cheap. What "correct" means for each:

- ``nan-at-clean``: NaN logits for some clean inputs: an error (no decision can be read).
- ``nan-away``: NaN logits only off the data (any pixel above 0.95; the clean inputs stay below 0.9): attack
  successes must survive re-verification; analyses raise, warn, or return finite numbers.
- ``nan-gradient``: ``sqrt(x) * sqrt(x)`` preprocessing on inputs with exact zeros (the input gradient is NaN):
  gradient attacks stop the samples (``result.stopped``) and refuse a robust accuracy; analyses that need gradients
  raise or warn.
- ``dropout`` / ``noise``: a stochastic forward not declared: an error; declared (``stochastic=True``): the same
  seed gives the same result and attack successes fool most of fresh draws.
- ``one-class``: an error.
- ``bfloat16``: the same outcome as the float32 copy of the same weights.
- ``no-gradient-path``: ``forward`` detaches its input: gradient attacks and analyses raise; gradient-free ones work.
- ``shifted-input`` / ``negated-output``: a wrapper whose ``forward`` transforms its ``Sequential``'s input or
  output: the same outcome as the equivalent flat ``Sequential`` of the same modules.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlens import Classifier

SHAPE = (1, 4, 4)
CLASSES = 3
N = 4
EPS = 0.3  # the budget of every bounded attack in the matrix (a fraction of the [0, 1] box)


def layers(seed: int = 0) -> nn.Sequential:
    """The tiny smooth MLP under every hostile model."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, CLASSES))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.5 / math.sqrt(max(1, p.shape[-1]))))
    return net


def inputs(seed: int = 1, zeros: bool = False) -> Tensor:
    """``N`` clean inputs in ``[0.1, 0.9]`` (with ``zeros``: a third of the pixels exactly 0)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 + 0.8 * torch.rand(N, *SHAPE, generator=g)
    if zeros:
        x = torch.where(torch.rand(x.shape, generator=g) < 0.33, torch.zeros_like(x), x)
    return x


class NaNWhere(nn.Module):
    """``layers(x)``, with NaN logits for the inputs where ``where(x)`` holds."""

    def __init__(self, where: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.layers = layers()
        self.where = where

    def forward(self, x: Tensor) -> Tensor:
        z = self.layers(x)
        return torch.where(self.where(x)[:, None], torch.full_like(z, math.nan), z)


def NaNAtClean() -> NaNWhere:  # noqa: N802 - reads as the model it builds
    """NaN logits for the inputs whose first pixel is below 0.5 (some clean inputs)."""
    return NaNWhere(lambda x: x.flatten(1)[:, 0] < 0.5)


def NaNAway() -> NaNWhere:  # noqa: N802
    """NaN logits where any pixel exceeds 0.95, far from the clean inputs (all below 0.9)."""
    return NaNWhere(lambda x: (x.flatten(1) > 0.95).any(1))


class SqrtSquared(nn.Module):
    """``layers(sqrt(x) * sqrt(x))``: the same function as ``layers(x)`` on ``x >= 0``, but the input gradient is NaN
    at every zero pixel (``inf * 0``)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = layers()

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(torch.sqrt(x) * torch.sqrt(x))


class DropoutAlways(nn.Module):
    """Dropout that stays active in eval mode (``F.dropout(training=True)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = layers()

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(F.dropout(x, 0.2, training=True))


class NoisyInput(nn.Module):
    """Gaussian noise added to the input on every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = layers()

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x + 0.05 * torch.randn_like(x))


class NoGradientPath(nn.Module):
    """``layers(x.detach())``: the logits do not depend differentiably on the input."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = layers()

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.detach())


class Shift(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: Tensor) -> Tensor:
        return x - self.c


class Scale(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: Tensor) -> Tensor:
        return x * self.c


class Negate(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return -x


class ShiftedInput(nn.Module):
    """``forward = layers((x - 0.5) * 20)``: a wrapper whose forward is not its Sequential alone."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = layers()

    def forward(self, x: Tensor) -> Tensor:
        return self.layers((x - 0.5) * 20)

    def flat(self) -> nn.Sequential:
        return nn.Sequential(Shift(0.5), Scale(20.0), *copy.deepcopy(self.layers))


class NegatedOutput(nn.Module):
    """``forward = -layers(x)``."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = layers()

    def forward(self, x: Tensor) -> Tensor:
        return -self.layers(x)

    def flat(self) -> nn.Sequential:
        return nn.Sequential(*copy.deepcopy(self.layers), Negate())


@dataclass(frozen=True)
class Hostile:
    """One hostile model: how to wrap it, its inputs, and (for equivalence checks) the reference to compare with."""

    name: str
    make: Callable[[], Classifier]
    zeros: bool = False
    expect: str = "result"
    """``"error"`` (any entry must raise a RobustLensError), ``"result"`` (verified), ``"same-as-reference"``,
    ``"stopped"`` (gradient entries stop), ``"stochastic"`` (reproducible, successes re-verified over draws),
    ``"no-gradients"`` (gradient entries raise)."""
    reference: Callable[[], Classifier] | None = None

    def x(self) -> Tensor:
        return inputs(zeros=self.zeros)


def _clf(model: nn.Module, **kw: Any) -> Classifier:
    return Classifier(model.eval(), input_shape=SHAPE, batch_size=3, **kw)


def _bf16() -> Classifier:
    return _clf(layers().to(torch.bfloat16))


def _bf16_reference() -> Classifier:
    return _clf(layers().to(torch.bfloat16).float())


HOSTILE: list[Hostile] = [
    Hostile("control", lambda: _clf(layers())),
    Hostile("nan-at-clean", lambda: _clf(NaNAtClean()), expect="error"),
    Hostile("nan-away", lambda: _clf(NaNAway())),
    Hostile("nan-gradient", lambda: _clf(SqrtSquared()), zeros=True, expect="stopped"),
    Hostile("dropout", lambda: _clf(DropoutAlways()), expect="error"),
    Hostile("noise", lambda: _clf(NoisyInput()), expect="error"),
    Hostile("dropout-declared", lambda: _clf(DropoutAlways(), stochastic=True, draws=3), expect="stochastic"),
    Hostile("noise-declared", lambda: _clf(NoisyInput(), stochastic=True, draws=3), expect="stochastic"),
    Hostile("one-class", lambda: _clf(nn.Sequential(nn.Flatten(), nn.Linear(16, 1))), expect="error"),
    Hostile("bfloat16", _bf16, expect="same-as-reference", reference=_bf16_reference),
    Hostile("no-gradient-path", lambda: _clf(NoGradientPath()), expect="no-gradients"),
    Hostile("shifted-input", lambda: _clf(ShiftedInput()), expect="same-as-reference",
            reference=lambda: _clf(ShiftedInput().flat())),
    Hostile("negated-output", lambda: _clf(NegatedOutput()), expect="same-as-reference",
            reference=lambda: _clf(NegatedOutput().flat())),
]


__all__ = ["CLASSES", "EPS", "HOSTILE", "Hostile", "N", "SHAPE", "inputs", "layers"]
