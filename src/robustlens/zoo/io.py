"""Saving and loading models safely.

Weights are stored as safetensors (no code, memory-mapped) or as a ``torch.save`` state dict, which is read with
``torch.load(weights_only=True)``: only tensors and plain containers are unpickled. A file holding a whole pickled
``nn.Module`` can run arbitrary code when loaded, so it is refused unless the caller passes ``unsafe=True``
(``--unsafe-pickle`` on the command line). :func:`load_user_model` is the one place that runs user code, and only
the file the user names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, CorruptFileError, RobustLensError, UnsafeLoadError
from .registry import create_model

_STATE_KEYS = ("model", "state_dict", "model_state_dict", "model_state", "net", "weights")
_PREFIXES = ("module.", "_orig_mod.")

ModelSpec = nn.Module | str | Callable[[], nn.Module] | None


def _spec_of(model: nn.Module) -> dict[str, Any] | None:
    spec = getattr(model, "robustlens_spec", None)
    return dict(spec) if isinstance(spec, Mapping) else None


def save_model(model: nn.Module, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> Path:
    """Save ``model``'s weights to ``path``, atomically (written beside it, then renamed).

    ``*.safetensors`` gives a safetensors file; any other suffix a ``torch.save`` checkpoint
    ``{"model": state_dict, "arch": spec, "metadata": ...}`` that loads with ``weights_only=True``. The architecture
    spec of zoo models (``robustlens_spec``) is stored too, so :func:`load_model` can rebuild the model from the file.
    ``metadata`` holds extra JSON-serialisable information (e.g. the data set and accuracy).
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"save_model expects an nn.Module, got {type(model).__name__}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    spec = _spec_of(model)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import save_model as st_save

            meta = {"format": "robustlens"}
            if spec is not None:
                meta["robustlens.arch"] = json.dumps(spec)
            if metadata:
                meta["robustlens.metadata"] = json.dumps(dict(metadata))
            st_save(model, str(tmp), metadata=meta)
        else:
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            torch.save({"model": state, "arch": spec, "metadata": dict(metadata or {})}, tmp)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def _sniff(p: Path) -> str:
    """``"safetensors"``, ``"torch"`` (zip or legacy pickle), or raise for anything else."""
    if not p.is_file():
        raise ConfigError(f"model file {p} not found; check the path")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(9)
    if size == 0:
        raise CorruptFileError(f"{p} is empty (0 bytes): the save was interrupted; save or download the model again")
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if n + 8 > size:
            raise CorruptFileError(f"{p} is a truncated safetensors file (header says {n + 8}+ bytes, file has "
                                   f"{size}); save or download the model again")
        return "safetensors"
    raise CorruptFileError(f"{p} is neither a safetensors file nor a torch.save checkpoint (starts with "
                           f"{head[:8].hex()}); it is corrupt or of another format")


def _corrupt(p: Path, e: BaseException) -> CorruptFileError:
    return CorruptFileError(f"{p} could not be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                            f"; the file is truncated or corrupt ({p.stat().st_size} bytes): save or download it again")


def _unsafe_refusal(p: Path, e: BaseException) -> UnsafeLoadError:
    detail = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "global" in ln), "")
    return UnsafeLoadError(
        f"refusing to load {p}: it is a full pickle that needs arbitrary Python objects ({detail}), and unpickling "
        "can execute arbitrary code. If you trust the file, pass unsafe=True (--unsafe-pickle on the command "
        "line); better, re-save it as weights only: torch.save(model.state_dict(), 'model.pt') or "
        "robustlens.zoo.save_model(model, 'model.safetensors')."
    )


def read_weights(path: str | os.PathLike[str], *, unsafe: bool = False, map_location: str | torch.device = "cpu"
                 ) -> tuple[dict[str, Tensor] | nn.Module, dict[str, Any] | None]:
    """Read a model file: ``(state_dict, architecture spec or None)``, or ``(module, None)`` for an allowed pickle."""
    p = Path(path)
    kind = _sniff(p)
    if kind == "safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(p), device=str(map_location))
            with safe_open(str(p), "pt") as f:
                meta = f.metadata() or {}
        except Exception as e:  # safetensors raises its own SafetensorError for corrupt headers and bodies
            raise _corrupt(p, e) from e
        arch = json.loads(meta["robustlens.arch"]) if "robustlens.arch" in meta else None
        return tensors, arch
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" not in msg or "truncated" in msg.lower():
            raise _corrupt(p, e) from e
        if not unsafe:
            raise _unsafe_refusal(p, e) from None
        try:
            obj = torch.load(p, map_location=map_location, weights_only=False)
        except Exception as e2:
            raise _corrupt(p, e2) from e2
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise _corrupt(p, e) from e
    if isinstance(obj, nn.Module):
        return obj, None
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{p} holds a {type(obj).__name__}, not a state dict or a checkpoint dict")
    arch = obj.get("arch") if isinstance(obj.get("arch"), Mapping) else None
    sd: Any = obj
    if not all(isinstance(v, Tensor) for v in obj.values()):
        key = next((k for k in _STATE_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            if unsafe and isinstance(obj.get("model"), nn.Module):
                return obj["model"], None
            raise ConfigError(f"{p} is a dict without weights: expected a state dict or a checkpoint with one of the "
                              f"keys {', '.join(_STATE_KEYS)}; found keys {sorted(map(str, obj))[:8]}")
        sd = obj[key]
    sd = {str(k): v for k, v in sd.items() if isinstance(v, Tensor)}
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd, (dict(arch) if arch is not None else None)


def _build(model: ModelSpec, arch: dict[str, Any] | None, p: Path) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, str):
        kw = {k: v for k, v in (arch or {}).items() if k != "name"} if arch and arch.get("name") == model else {}
        return create_model(model, **kw)
    if callable(model):
        built = model()
        if not isinstance(built, nn.Module):
            raise ConfigError(f"the model factory returned {type(built).__name__}, not an nn.Module")
        return built
    if arch is None:
        raise ConfigError(f"{p} holds weights but no architecture; pass model= (a zoo name such as 'smallcnn', an "
                          "nn.Module or a factory), or --model on the command line")
    spec = dict(arch)
    return create_model(spec.pop("name"), **spec)


def load_model(source: str | os.PathLike[str], model: ModelSpec = None, *, unsafe: bool = False,
               strict: bool = True, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load a model from a file, safely, and return it in eval mode.

    Args:
        source: a ``.safetensors`` file, a ``torch.save`` state dict, or a checkpoint dict holding one under
            ``"model"`` / ``"state_dict"`` / ``"model_state_dict"`` (``module.`` prefixes from DataParallel are
            stripped); or ``"timm:NAME"``, ``"torchvision:NAME"``, ``"robustbench:NAME"`` for the adapters.
        model: the architecture to load the weights into: an ``nn.Module``, a zoo name, or a factory; by default
            the architecture recorded in the file by :func:`save_model`.
        unsafe: allow a file that holds a full pickled model (arbitrary code execution: trusted files only).
        strict: require the weights to match the architecture's parameters exactly.
        map_location: device the tensors are loaded to.

    Raises:
        UnsafeLoadError: the file needs full unpickling and ``unsafe`` is False (the message says how to proceed).
        CorruptFileError: the file is empty, truncated or not a model file.
        ConfigError: the weights do not fit the architecture, or no architecture is known.
    """
    text = str(source)
    for prefix in ("timm:", "torchvision:", "robustbench:"):
        if text.startswith(prefix):
            from . import adapters

            fn: Any = {"timm:": adapters.from_timm, "torchvision:": adapters.from_torchvision,
                  "robustbench:": adapters.from_robustbench}[prefix]
            return fn(text[len(prefix):]).eval()
    p = Path(source)
    weights, arch = read_weights(p, unsafe=unsafe, map_location=map_location)
    if isinstance(weights, nn.Module):
        if model is None:
            return weights.eval()
        weights = weights.state_dict()
    net = _build(model, arch, p)
    try:
        result = net.load_state_dict(weights, strict=strict)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()][:6]
        raise ConfigError(f"the weights in {p} do not fit {type(net).__name__}: " + " ".join(lines)
                          + " -- check the architecture (model=, --model) and its options such as num_classes") from e
    if not strict and (result.missing_keys or result.unexpected_keys):
        import warnings

        from ..errors import RobustLensWarning

        warnings.warn(f"{p}: {len(result.missing_keys)} missing and {len(result.unexpected_keys)} unexpected keys "
                      "ignored (strict=False)", RobustLensWarning, stacklevel=2)
    return net.to(map_location).eval()


def load_user_model(spec: str, weights: str | os.PathLike[str] | None = None, *, unsafe: bool = False,
                    **kwargs: Any) -> nn.Module:
    """Build a model defined in a user's Python file: ``"path/to/file.py:factory"``.

    The file is imported by path and ``factory(**kwargs)`` is called; it must return an ``nn.Module``. This runs the
    code in that file, so it is only ever called on a file the user names (``--model-file`` on the command line).
    ``weights`` are then loaded with :func:`load_model` (safely unless ``unsafe``). The model is returned in eval
    mode.
    """
    file, sep, attr = str(spec).rpartition(":")
    if not sep or not file or not attr.isidentifier():
        raise ConfigError(f"model spec {spec!r} must be 'path/to/file.py:factory' (a file and the name of a function "
                          "or class in it that returns the nn.Module)")
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"model file {path} not found (from {spec!r})")
    name = "robustlens_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{path} cannot be imported as a Python module; name a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise RobustLensError(f"importing {path} failed: {type(e).__name__}: {e}") from e
    factory: Any = getattr(module, attr, None)
    if factory is None or not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))[:10]
        raise ConfigError(f"{path} has no callable {attr!r}; callables defined there: {', '.join(found) or 'none'}")
    net = factory(**kwargs)
    if not isinstance(net, nn.Module):
        raise ConfigError(f"{spec} returned {type(net).__name__}, not a torch.nn.Module")
    if weights is not None:
        return load_model(weights, net, unsafe=unsafe)
    return net.eval()
