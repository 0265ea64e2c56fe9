"""``create_model``: build a zoo architecture by name, with seeded initialisation."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from .models import MLP, LeNet, ResNet18, SmallCNN, WideResNet

Factory = Callable[..., nn.Module]

_REGISTRY: dict[str, tuple[Factory, dict[str, Any]]] = {}


def register_model(name: str, factory: Factory, **defaults: Any) -> None:
    """Add ``factory`` (called as ``factory(num_classes=..., in_channels=..., **kwargs)``) to the zoo as ``name``."""
    _REGISTRY[name.lower()] = (factory, dict(defaults))


def list_models() -> list[str]:
    """Names accepted by :func:`create_model` (``wrn-D-W`` also accepts any valid depth and width)."""
    return sorted(_REGISTRY)


register_model("mlp", MLP, in_channels=1)
register_model("lenet", LeNet, in_channels=1)
register_model("smallcnn", SmallCNN, in_channels=1)
register_model("resnet18", ResNet18, in_channels=3)
register_model("preact_resnet18", lambda **kw: ResNet18(preact=True, **kw), in_channels=3)
register_model("wrn-28-10", WideResNet, in_channels=3, depth=28, width=10)
register_model("wideresnet", WideResNet, in_channels=3)

_WRN = re.compile(r"^wrn-(\d+)-(\d+)$")


def _resolve(name: str) -> tuple[Factory, dict[str, Any]]:
    key = name.lower().replace("preact-resnet18", "preact_resnet18")
    if key in _REGISTRY:
        return _REGISTRY[key]
    m = _WRN.match(key)
    if m:
        return WideResNet, {"in_channels": 3, "depth": int(m.group(1)), "width": int(m.group(2))}
    raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(list_models())} (or wrn-DEPTH-WIDTH), "
                      "or load your own with load_user_model('file.py:factory')")


def create_model(name: str, num_classes: int = 10, in_channels: int | None = None, seed: int = 0,
                 **kwargs: Any) -> nn.Module:
    """Build zoo model ``name`` with weights initialised from ``seed`` (the global RNG is left untouched).

    Args:
        name: one of :func:`list_models` (``mlp``, ``lenet``, ``smallcnn``, ``resnet18``, ``preact_resnet18``,
            ``wrn-28-10``, ``wideresnet``), or ``wrn-DEPTH-WIDTH``.
        num_classes: number of output logits.
        in_channels: input channels (default 1 for the MNIST-sized models, 3 for the CIFAR ones).
        seed: initialisation seed; the same seed gives bit-identical weights.
        **kwargs: architecture options, e.g. ``input_size`` (mlp, lenet, smallcnn), ``hidden`` (mlp),
            ``depth``, ``width``, ``dropout`` (wideresnet).

    The returned module carries ``robustlens_spec`` (name and arguments) so that :func:`save_model` can record it
    and :func:`load_model` can rebuild the architecture from the file alone.
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    factory, defaults = _resolve(name)
    kw = {**defaults, **kwargs}
    if in_channels is not None:
        kw["in_channels"] = int(in_channels)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = factory(num_classes=num_classes, **kw)
    except TypeError as e:
        raise ConfigError(f"bad options for model {name!r}: {e}") from e
    spec = {"name": name.lower(), "num_classes": int(num_classes), **kw}
    model.robustlens_spec = spec  # type: ignore[assignment]
    return model
