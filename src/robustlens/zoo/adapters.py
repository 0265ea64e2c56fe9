"""Adapters for models from timm, torchvision and RobustBench (optional packages, imported only when called).

Each returns a plain ``nn.Module`` producing logits; wrap it in :class:`~robustlens.Classifier` with the
normalisation the model expects (timm and torchvision models expect ImageNet-normalised inputs; RobustBench models
normalise inside, so they take ``[0, 1]`` images directly).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from torch import nn

from ..errors import MissingDependencyError


def _require(module: str, package: str, feature: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        extra = "" if missing.split(".")[0] == module.split(".")[0] else f" (it failed to import {missing!r}: {e})"
        raise MissingDependencyError(
            f"{feature} needs the {package!r} package{extra}; install it with: pip install {package}"
            + (f" {missing.split('.')[0]}" if extra else "")
        ) from e


def from_timm(name: str, pretrained: bool = False, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """A model from timm (``timm.create_model``), e.g. ``from_timm("resnet50", pretrained=True)``."""
    timm = _require("timm", "timm", "from_timm")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def from_torchvision(name: str, weights: str | None = None, **kwargs: Any) -> nn.Module:
    """A model from ``torchvision.models`` by name, e.g. ``from_torchvision("resnet18", weights="DEFAULT")``."""
    tv = _require("torchvision.models", "torchvision", "from_torchvision")
    return tv.get_model(name, weights=weights, **kwargs)


def from_robustbench(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                     model_dir: str = "./models") -> nn.Module:
    """A model from the RobustBench model zoo (Croce et al., NeurIPS 2021 Datasets and Benchmarks), downloaded
    into ``model_dir`` by ``robustbench.utils.load_model``."""
    rb = _require("robustbench.utils", "robustbench", "from_robustbench")
    return rb.load_model(model_name=name, dataset=dataset, threat_model=threat_model, model_dir=model_dir)
