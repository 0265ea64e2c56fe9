"""The results convention: every analysis returns a typed dataclass that serializes to JSON.

A result is a ``@dataclass`` deriving from :class:`Result`. ``to_dict()`` gives a JSON-ready dict (tensors and
arrays become nested lists), ``save(path)`` writes ``path`` as JSON with large arrays in an ``.npz`` file beside it,
and ``Result.load(path)`` rebuilds the same object, tensors included. Results nest: a field may hold another result,
a list or dict of results, tensors, arrays or plain JSON values.

Writes are atomic (temporary file + rename), so an interrupted save never leaves a half-written result behind.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from .errors import StorageError

SCHEMA_VERSION = 1
_REGISTRY: dict[str, type[Result]] = {}
T = TypeVar("T", bound="Result")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    If writing fails (a full disk, a kill), the previous content of ``path`` is untouched and the temporary file is
    removed; an operating-system error is raised as :class:`~robustlens.errors.StorageError`, whose message says what
    to do.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(e, OSError):
            raise StorageError(
                f"could not write {path} ({len(data):,} bytes): {e.strerror or e}. Free some space or choose a folder "
                "you can write to; the file already at that path (if any) is unchanged", e.errno, e.strerror) from e
        raise


def _to_jsonable(value: Any, arrays: dict[str, np.ndarray] | None, key: str) -> Any:
    if isinstance(value, Result):
        out = {"__result__": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = _to_jsonable(getattr(value, f.name), arrays, f"{key}.{f.name}")
        return out
    if isinstance(value, torch.Tensor):
        arr = value.detach().cpu().numpy()
        if arrays is None:
            return arr.tolist()
        arrays[key] = arr
        return {"__tensor__": key, "dtype": str(arr.dtype), "shape": list(arr.shape)}
    if isinstance(value, np.ndarray):
        if arrays is None:
            return value.tolist()
        arrays[key] = value
        return {"__ndarray__": key, "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v, arrays, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, arrays, f"{key}.{i}") for i, v in enumerate(value)]
    if isinstance(value, float) and not np.isfinite(value):
        return {"__float__": repr(value)}
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot serialize a {type(value).__name__} in a result field ({key})")


def _from_jsonable(value: Any, arrays: Any) -> Any:
    if isinstance(value, dict):
        if "__result__" in value:
            cls = _REGISTRY.get(value["__result__"])
            if cls is None:
                raise ValueError(
                    f"unknown result type {value['__result__']!r}: import the module that defines it first"
                )
            kwargs = {k: _from_jsonable(v, arrays) for k, v in value.items() if k != "__result__"}
            names = {f.name for f in dataclasses.fields(cls) if f.init}
            return cls(**{k: v for k, v in kwargs.items() if k in names})
        if "__tensor__" in value:
            return torch.from_numpy(np.array(arrays[value["__tensor__"]]))
        if "__ndarray__" in value:
            return np.array(arrays[value["__ndarray__"]])
        if "__float__" in value:
            return float(value["__float__"])
        return {k: _from_jsonable(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v, arrays) for v in value]
    return value


@dataclasses.dataclass
class Result:
    """Base class of every typed result: ``to_dict()``, ``save(path)``, ``load(path)``."""

    kind: ClassVar[str] = "result"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field; tensors and arrays become nested lists."""
        out = _to_jsonable(self, None, "")
        assert isinstance(out, dict)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to ``path`` (JSON); tensors and arrays go to ``<path stem>.npz`` beside it."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        payload = {
            "schema_version": SCHEMA_VERSION,
            "type": type(self).__name__,
            "data": _to_jsonable(self, arrays, "r"),
        }
        npz_path = path.with_suffix(".npz")
        if arrays:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
            atomic_write_bytes(npz_path, buf.getvalue())
            payload["arrays"] = npz_path.name
        atomic_write_bytes(path, json.dumps(payload, indent=2).encode())
        return path

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str]) -> T:
        """Read a result written by :meth:`save`."""
        path = Path(path)
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not a robustlens result file (invalid JSON: {e})") from e
        if not isinstance(payload, dict) or "data" not in payload:
            raise ValueError(f"{path} is not a robustlens result file (no 'data' entry)")
        arrays: Any = {}
        if payload.get("arrays"):
            with np.load(path.parent / payload["arrays"], allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        obj = _from_jsonable(payload["data"], arrays)
        if not isinstance(obj, cls):
            raise TypeError(f"{path} holds a {type(obj).__name__}, not a {cls.__name__}")
        return obj
