"""Saving and loading models safely.

Weights are stored as safetensors (no code, memory-mapped) or as a ``torch.save`` state dict, which is read with
``torch.load(weights_only=True)``: only tensors and plain containers are unpickled. A file holding a whole pickled
``nn.Module`` can run arbitrary code when loaded, so it is refused unless the caller passes ``unsafe=True``
(``--unsafe-pickle`` on the command line). :func:`load_user_model` is the one place that runs user code, and only
the file the user names.

A model file is untrusted input in two more ways, and :func:`load_model` checks both before a number is computed:

- its recorded architecture alone must not decide how much memory is spent: the architecture is first built on
  PyTorch's ``meta`` device (no memory for weights), under a budget of the file's own tensor count and size, and its
  parameter names and shapes are compared with those in the file (for safetensors, read from the header without
  loading a tensor) before the real model is built; malformed architecture metadata is a
  :class:`~robustlens.errors.CorruptFileError`;
- weights holding NaN or infinity are refused (``allow_nonfinite=True`` loads them anyway): such a model's logits
  are meaningless, and every robustness number computed from them would be too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import pickle
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, CorruptFileError, RobustLensError, UnsafeLoadError
from ..files import atomic_replace, dumps_strict
from .adapters import PREFIXES, load_pretrained
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
    spec = _spec_of(model)
    with atomic_replace(p) as tmp:
        if p.suffix == ".safetensors":
            from safetensors.torch import save_model as st_save

            meta = {"format": "robustlens"}
            if spec is not None:
                meta["robustlens.arch"] = dumps_strict(spec)
            if metadata:
                meta["robustlens.metadata"] = dumps_strict(dict(metadata))
            st_save(model, str(tmp), metadata=meta)
        else:
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            torch.save({"model": state, "arch": spec, "metadata": dict(metadata or {})}, tmp)
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


def _arch_of(value: Any, p: Path) -> dict[str, Any] | None:
    """The architecture a file records (JSON text or a dict), checked for shape: an object with a string ``name``."""
    if value is None:
        return None
    hint = "pass the architecture yourself (model=..., --arch on the command line) or save the model again"
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise CorruptFileError(f"{p} records an architecture that is not valid JSON ({e}); {hint}") from e
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value) or not isinstance(
            value.get("name"), str):
        raise CorruptFileError(f"{p} records a malformed architecture ({str(value)[:120]}): expected an object with "
                               f"a string 'name' and the model's options; {hint}")
    return dict(value)


def _read_header(p: Path) -> tuple[dict[str, tuple[int, ...]], Any]:
    """The tensor shapes and the recorded architecture (unchecked JSON text) of a safetensors file, from its header
    alone (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(p), "pt") as f:
            shapes = {k: tuple(int(d) for d in f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own SafetensorError for corrupt headers
        raise _corrupt(p, e) from e
    return shapes, meta.get("robustlens.arch")


def _load_safetensors(p: Path, map_location: str | torch.device) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(p), device=str(map_location))
    except Exception as e:  # a body shorter than its header says, or damaged
        raise _corrupt(p, e) from e


def _read_torch(p: Path, unsafe: bool, map_location: str | torch.device
                ) -> tuple[dict[str, Tensor] | nn.Module, Any]:
    """The weights of a ``torch.save`` file and its recorded architecture (an unchecked dict, or ``None``)."""
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
    sd: Any = obj
    arch = None
    if not all(isinstance(v, Tensor) for v in obj.values()):
        # a robustlens checkpoint records its architecture as a dict; other tools' "arch" strings are ignored
        arch = obj["arch"] if isinstance(obj.get("arch"), Mapping) else None
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
    return sd, arch


def read_weights(path: str | os.PathLike[str], *, unsafe: bool = False, map_location: str | torch.device = "cpu"
                 ) -> tuple[dict[str, Tensor] | nn.Module, dict[str, Any] | None]:
    """Read a model file: ``(state_dict, architecture spec or None)``, or ``(module, None)`` for an allowed pickle.

    A malformed recorded architecture raises :class:`~robustlens.errors.CorruptFileError`."""
    p = Path(path)
    if _sniff(p) == "safetensors":
        _, arch = _read_header(p)
        return _load_safetensors(p, map_location), _arch_of(arch, p)
    weights, arch = _read_torch(p, unsafe, map_location)
    return weights, _arch_of(arch, p)


# ---------------------------------------------------------------------------------------------- building
class _TooLarge(Exception):
    pass


@contextmanager
def _parameter_budget(tensors: int, elements: int) -> Iterator[None]:
    """Abort (``_TooLarge``) a model construction that registers more parameters and buffers than the budget."""
    from torch.nn.modules.module import (
        register_module_buffer_registration_hook,
        register_module_parameter_registration_hook,
    )

    seen = [0, 0]

    def count(module: nn.Module, name: str, value: Tensor | None) -> None:
        if value is not None:
            seen[0] += 1
            seen[1] += value.numel()
            if seen[0] > tensors or seen[1] > elements:
                raise _TooLarge(f"over {seen[1]:,} values in {seen[0]} tensors")

    handles = [register_module_parameter_registration_hook(count), register_module_buffer_registration_hook(count)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _fit_problems(model_shapes: Mapping[str, tuple[int, ...]], file_shapes: Mapping[str, tuple[int, ...]],
                  strict: bool) -> list[str]:
    out = [f"{k}: {list(file_shapes[k])} in the file, {list(v)} in the model"
           for k, v in model_shapes.items() if k in file_shapes and tuple(file_shapes[k]) != tuple(v)]
    if strict:
        missing = [k for k in model_shapes if k not in file_shapes]
        unexpected = [k for k in file_shapes if k not in model_shapes]
        if missing:
            out.append(f"missing from the file: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
        if unexpected:
            out.append(f"not in the model: {', '.join(unexpected[:6])}{' ...' if len(unexpected) > 6 else ''}")
    return out


def _zoo_spec(model: str | None, arch: dict[str, Any] | None, p: Path) -> tuple[str, dict[str, Any], bool]:
    """``(zoo name, options, whether the options come from the file)`` of the model to build."""
    if isinstance(model, str):
        if arch and arch["name"] == model:
            return model, {k: v for k, v in arch.items() if k != "name"}, True
        return model, {}, False
    if arch is None:
        raise ConfigError(f"{p} holds weights but no architecture; pass model= (a zoo name such as 'smallcnn', an "
                          "nn.Module or a factory), or --model on the command line")
    return arch["name"], {k: v for k, v in arch.items() if k != "name"}, True


def _build_checked(model: ModelSpec, recorded_arch: Any, shapes: Mapping[str, tuple[int, ...]], p: Path,
                   strict: bool) -> nn.Module:
    """The model to load the weights of ``p`` into. A zoo architecture (named, or recorded in the file) is first
    built on the meta device within a budget of the file's size and checked against the file's tensor shapes, so
    that metadata alone never decides how much memory is allocated. The recorded architecture is only read (and
    checked) when it is used: a module or factory given by the caller ignores it."""
    if isinstance(model, nn.Module):
        return model
    if callable(model) and not isinstance(model, str):
        built = model()
        if not isinstance(built, nn.Module):
            raise ConfigError(f"the model factory returned {type(built).__name__}, not an nn.Module")
        return built
    try:
        arch = _arch_of(recorded_arch, p)
    except CorruptFileError:
        if model is None:
            raise
        arch = None  # a zoo name was given: a malformed record cannot supply its options
    name, kw, from_file = _zoo_spec(model, arch, p)
    n_file = sum(math.prod(s) for s in shapes.values())
    bad: type[RobustLensError] = CorruptFileError if from_file else ConfigError
    recorded = f"the architecture recorded in {p} ({dumps_strict({'name': name, **kw})[:160]})"
    what = recorded if from_file else f"model {name!r}"
    fix = ("pass the architecture yourself (model=..., --arch) or save the model again" if from_file else
           "check the architecture (model=, --arch) and its options such as num_classes")
    try:
        with _parameter_budget(2 * len(shapes) + 64, 2 * n_file + 2**20), torch.device("meta"):
            skeleton = create_model(name, **kw)
    except _TooLarge as e:
        raise bad(f"{what} asks for a model larger than the weights in the file ({e} registered, the file holds "
                  f"{n_file:,} values in {len(shapes)} tensors); refusing to build it: {fix}") from None
    except Exception as e:  # noqa: BLE001 - the options come from an untrusted file: any failure is its fault
        if not from_file:
            raise
        raise CorruptFileError(f"{recorded} cannot be built ({type(e).__name__}: {e}); {fix}") from e
    problems = _fit_problems({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, shapes, strict)
    if problems:
        target = recorded if from_file else type(skeleton).__name__
        raise bad(f"the weights in {p} do not fit {target}: " + "; ".join(problems[:6]) + f" -- {fix}")
    n_model = sum(t.numel() for t in skeleton.parameters())
    if from_file and n_model > n_file:
        raise CorruptFileError(f"{recorded} has {n_model:,} parameters but the file holds only {n_file:,} values; "
                               f"refusing to build it: {fix}")
    return create_model(name, **kw)


def _check_finite(weights: Mapping[str, Tensor], p: Path) -> None:
    bad = []
    for k, v in weights.items():
        if not (v.is_floating_point() or v.is_complex()) or bool(torch.isfinite(v.sum())):
            continue  # a finite sum means every element is finite (NaN and inf propagate): one pass, no copy
        if not bool(torch.isfinite(v).all()):  # an infinite sum may be an overflow of finite values
            bad.append(f"{k} ({int(torch.isnan(v).sum())} NaN, {int(torch.isinf(v).sum())} inf of {v.numel()})")
    if bad:
        raise CorruptFileError(
            f"{p} holds non-finite weights: {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. A model with NaN "
            "or infinite weights gives meaningless logits, so every robustness number computed from it would be "
            "wrong; retrain it (the training probably diverged) or save it again, or pass allow_nonfinite=True to "
            "load it anyway")


def load_model(source: str | os.PathLike[str], model: ModelSpec = None, *, unsafe: bool = False,
               strict: bool = True, map_location: str | torch.device = "cpu",
               allow_nonfinite: bool = False) -> nn.Module:
    """Load a model from a file, safely, and return it in eval mode.

    Args:
        source: a ``.safetensors`` file, a ``torch.save`` state dict, or a checkpoint dict holding one under
            ``"model"`` / ``"state_dict"`` / ``"model_state_dict"`` (``module.`` prefixes from DataParallel are
            stripped); or ``"timm:NAME"``, ``"torchvision:NAME"``, ``"robustbench:NAME"`` for the adapters
            (pretrained weights, with the normalisation they expect recorded on the module: see
            :func:`robustlens.zoo.adapters.normalization`).
        model: the architecture to load the weights into: an ``nn.Module``, a zoo name, or a factory; by default
            the architecture recorded in the file by :func:`save_model`.
        unsafe: allow a file that holds a full pickled model (arbitrary code execution: trusted files only).
        strict: require the weights to match the architecture's parameters exactly.
        map_location: device the tensors are loaded to.
        allow_nonfinite: load weights that hold NaN or infinity (refused by default).

    Raises:
        UnsafeLoadError: the file needs full unpickling and ``unsafe`` is False (the message says how to proceed).
        CorruptFileError: the file is empty, truncated or not a model file; its recorded architecture is malformed,
            larger than its weights or does not fit them; or its weights are not finite.
        ConfigError: the weights do not fit the architecture given, or no architecture is known.

    Example::

        net = load_model("runs/at/model.safetensors")          # the architecture recorded by save_model
        net = load_model("resnet18.pt", "resnet18")             # a plain state dict into a zoo model
    """
    text = str(source)
    if text.startswith(PREFIXES):
        return load_pretrained(text)
    p = Path(source)
    weights: dict[str, Tensor] | nn.Module
    if _sniff(p) == "safetensors":
        shapes, arch = _read_header(p)
        net = _build_checked(model, arch, shapes, p, strict)  # before a tensor is read
        weights = _load_safetensors(p, map_location)
    else:
        weights, arch = _read_torch(p, unsafe, map_location)
        if isinstance(weights, nn.Module):
            if not allow_nonfinite:
                _check_finite(weights.state_dict(), p)
            if model is None:
                return weights.eval()
            weights = weights.state_dict()
        net = _build_checked(model, arch, {k: tuple(v.shape) for k, v in weights.items()}, p, strict)
    if not allow_nonfinite:
        _check_finite(weights, p)
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
