"""Adapters for pretrained models from timm, torchvision and RobustBench (optional packages, imported when called).

Each returns a plain ``nn.Module`` producing logits, with its *pretrained* weights (timm's and torchvision's default
weights are ImageNet ones, fetched into those libraries' own caches the first time), and records on the module the
input normalisation those weights expect: ``robustlens_normalization = {"mean": ..., "std": ...}`` on ``[0, 1]``
inputs. :func:`normalization` reads it back, and :func:`pretrained_classifier` builds the
:class:`~robustlens.Classifier` with it, so perturbations are measured in the ``[0, 1]`` image space while the model
sees the inputs it was trained on. RobustBench models normalise inside, so they record no mean and std.

Installing the packages: torchvision (and timm, which needs it) must be the build that matches the installed torch.
A plain ``pip install torchvision`` can replace a CPU torch with a CUDA one (or the reverse); the error messages here
give the command that keeps the installed torch (PyTorch's own wheel index for that build). Example::

    from robustlens.zoo import pretrained_classifier
    clf = pretrained_classifier("timm:resnet50")        # ImageNet weights, ImageNet mean/std on the Classifier
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypedDict

from torch import nn

from ..errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from ..classifier import Classifier

ATTRIBUTE = "robustlens_normalization"


class Normalization(TypedDict):
    """The per-channel ``mean`` and ``std`` a model's weights expect on ``[0, 1]`` inputs (``None``: none)."""

    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None


# ---------------------------------------------------------------------------------------------- install hints
def torch_wheel_index() -> str:
    """PyTorch's wheel index for the build of the installed torch (CPU, CUDA x.y or ROCm x.y)."""
    import torch

    cuda = getattr(torch.version, "cuda", None)
    hip = getattr(torch.version, "hip", None)
    if cuda:
        tag = "cu" + "".join(cuda.split(".")[:2])
    elif hip:
        tag = "rocm" + ".".join(hip.split(".")[:2])
    else:
        tag = "cpu"
    return f"https://download.pytorch.org/whl/{tag}"


def install_hint(package: str) -> str:
    """How to install ``package`` without replacing the installed torch."""
    import torch

    torchvision = (f"pip install torchvision --index-url {torch_wheel_index()} (the torchvision build that matches "
                   f"your torch {torch.__version__}; installing it from PyPI without that index can replace torch "
                   "with another build)")
    if package == "torchvision":
        return torchvision
    if package == "timm":
        return f"first {torchvision}, then: pip install timm"
    if package == "robustbench":
        return (f"first {torchvision}, then: pip install git+https://github.com/RobustBench/robustbench.git "
                "(check with pip install --dry-run that it keeps your torch)")
    return f"pip install {package}"


def _require(module: str, package: str, feature: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        top = missing.split(".")[0]
        if top == module.split(".")[0]:
            raise MissingDependencyError(f"{feature} needs the {package!r} package; install it with: "
                                         f"{install_hint(package)}") from e
        raise MissingDependencyError(f"{feature} needs the {package!r} package, which failed to import {missing!r} "
                                     f"({e}); install it with: {install_hint(top)}") from e


# ---------------------------------------------------------------------------------------------- normalisation
def _stat(values: Any, what: str, source: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    if isinstance(values, (int, float)):
        values = [values]
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: the pretrained weights declare an unreadable {what} {values!r}") from None
    if not out:
        raise ConfigError(f"{source}: the pretrained weights declare an empty {what}")
    return out


def _record(model: nn.Module, mean: Any, std: Any, source: str) -> nn.Module:
    norm = {"mean": _stat(mean, "mean", source), "std": _stat(std, "std", source), "source": source}
    setattr(model, ATTRIBUTE, norm)
    return model


def normalization(model: nn.Module, default_mean: Sequence[float] | None = None,
                  default_std: Sequence[float] | None = None) -> Normalization:
    """The ``{"mean": ..., "std": ...}`` a model's weights expect on ``[0, 1]`` inputs: the one an adapter recorded
    on the module, else the defaults (typically the data set's customary statistics).

    Use it when wrapping: ``Classifier(net, bounds=(0, 1), **normalization(net, data.mean, data.std))``.
    """
    recorded = getattr(model, ATTRIBUTE, None)
    if isinstance(recorded, dict):
        return {"mean": _stat(recorded.get("mean"), "mean", "the model"),
                "std": _stat(recorded.get("std"), "std", "the model")}
    return {"mean": None if default_mean is None else tuple(default_mean),
            "std": None if default_std is None else tuple(default_std)}


# ---------------------------------------------------------------------------------------------- adapters
def from_timm(name: str, pretrained: bool = True, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """A model from timm (``timm.create_model``) with its pretrained weights and the mean/std of its
    ``pretrained_cfg``, e.g. ``from_timm("resnet50")``; ``pretrained=False`` gives a randomly initialised one."""
    timm = _require("timm", "timm", "from_timm")
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = timm.create_model(name, pretrained=pretrained, **kwargs)
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    if not isinstance(cfg, dict):  # timm >= 0.9 may hold a PretrainedCfg dataclass
        cfg = {k: getattr(cfg, k) for k in ("mean", "std") if hasattr(cfg, k)}
    return _record(model, cfg.get("mean"), cfg.get("std"), f"timm:{name}")


def _torchvision_weights(tv: ModuleType, name: str, weights: Any) -> Any:
    if weights is None or not isinstance(weights, str):
        return weights
    try:
        enum = tv.get_model_weights(name)
        return enum[weights.split(".")[-1]]
    except (KeyError, ValueError) as e:
        raise ConfigError(f"torchvision model {name!r} has no weights {weights!r} ({e}); use 'DEFAULT' or one of "
                          "the names torchvision.models.get_model_weights(name) lists") from None


def from_torchvision(name: str, weights: Any = "DEFAULT", **kwargs: Any) -> nn.Module:
    """A model from ``torchvision.models`` by name with pretrained weights (``"DEFAULT"``: the best ones torchvision
    has; a weights name or enum member; ``None``: random initialisation), recording the mean/std of the weights'
    preprocessing transform, e.g. ``from_torchvision("resnet18")``."""
    tv = _require("torchvision.models", "torchvision", "from_torchvision")
    w = _torchvision_weights(tv, name, weights)
    model = tv.get_model(name, weights=w, **kwargs)
    if w is None:
        return _record(model, None, None, f"torchvision:{name}")
    preset = w.transforms()
    return _record(model, getattr(preset, "mean", None), getattr(preset, "std", None), f"torchvision:{name}")


def from_robustbench(name: str, dataset: str = "cifar10", threat_model: str = "Linf",
                     model_dir: str = "./models") -> nn.Module:
    """A model from the RobustBench model zoo (Croce et al., NeurIPS 2021 Datasets and Benchmarks), downloaded
    into ``model_dir`` by ``robustbench.utils.load_model``. RobustBench models normalise inside: they take ``[0, 1]``
    images directly, so no mean/std is recorded (and none is applied on top)."""
    rb = _require("robustbench.utils", "robustbench", "from_robustbench")
    model = rb.load_model(model_name=name, dataset=dataset, threat_model=threat_model, model_dir=model_dir)
    return _record(model, None, None, f"robustbench:{name}")


PREFIXES = ("timm:", "torchvision:", "robustbench:")


def load_pretrained(source: str) -> nn.Module:
    """``"timm:NAME"``, ``"torchvision:NAME"`` or ``"robustbench:NAME"``: the pretrained model, in eval mode, with
    the normalisation its weights expect recorded on it (:func:`normalization`)."""
    adapters = {"timm:": from_timm, "torchvision:": from_torchvision, "robustbench:": from_robustbench}
    for prefix, fn in adapters.items():
        if source.startswith(prefix):
            return fn(source[len(prefix):]).eval()  # type: ignore[operator]
    raise ConfigError(f"a pretrained model is named 'timm:NAME', 'torchvision:NAME' or 'robustbench:NAME', got "
                      f"{source!r}; load model files with load_model")


def pretrained_classifier(source: str, **kwargs: Any) -> Classifier:
    """``"timm:NAME"``, ``"torchvision:NAME"`` or ``"robustbench:NAME"`` as a :class:`~robustlens.Classifier` on
    ``[0, 1]`` images with the normalisation its weights expect (``kwargs`` go to the Classifier)."""
    from ..classifier import Classifier

    net = load_pretrained(source)
    return Classifier(net, bounds=kwargs.pop("bounds", (0.0, 1.0)), **{**normalization(net), **kwargs})


__all__ = ["PREFIXES", "Normalization", "from_robustbench", "from_timm", "from_torchvision", "install_hint",
           "load_pretrained", "normalization", "pretrained_classifier", "torch_wheel_index"]
