"""The results convention: every analysis returns a typed dataclass that serializes to strict JSON.

A result is a ``@dataclass`` deriving from :class:`Result`. ``to_dict()`` gives a JSON-ready dict (tensors and
arrays become nested lists), ``to_json()`` strict JSON text, ``save(path)`` writes the result to one file and
``Result.load(path)`` rebuilds the same object, tensors included, bit for bit. Results nest: a field may hold another
result, a list or dict of results, tensors, arrays or plain JSON values.

**One path is one result.** ``save`` writes exactly the file it is given, whole or not at all, in one of two formats
chosen by the extension (anything else is refused with a :class:`~robustlens.errors.ConfigError`):

- ``.json``: one strict JSON document; each tensor or array is stored inside it as the base64 text of its
  zlib-compressed little-endian bytes, with its dtype and shape (exact, and readable by any JSON tool);
- ``.npz``: a NumPy zip archive holding the same JSON document as its ``result.json`` member and one ``.npy``
  member per tensor (compact for large arrays; ``numpy.load(path)[name]`` reads an array without robustlens).

JSON is strict everywhere (RFC 8259): non-finite floats are written as ``{"__float__": "nan" | "inf" | "-inf"}``,
never as the bare ``NaN`` / ``Infinity`` that standard parsers reject. The file is written through
:func:`robustlens.files.atomic_replace` (a temporary file, ``fsync``, one rename), so a failed or interrupted save
leaves the previous file at that path unchanged and nothing half-written beside it. Results written by earlier
versions as a JSON file with an ``.npz`` of arrays beside it still load.

Example::

    res = PGD(eps=8 / 255)(clf, x, y)
    res.save("runs/pgd.json")            # or "runs/pgd.npz" for large results
    again = Result.load("runs/pgd.json")
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from .errors import ConfigError, CorruptFileError
from .files import FLOAT_KEY, atomic_replace, atomic_write_bytes, decode_floats, dumps_strict, encode_floats

SCHEMA_VERSION = 2
RESULT_SUFFIXES = (".json", ".npz")
JSON_MEMBER = "result.json"
_REGISTRY: dict[str, type[Result]] = {}
T = TypeVar("T", bound="Result")


def check_result_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names a result file robustlens can write (``.json`` or ``.npz``);
    else a :class:`~robustlens.errors.ConfigError` naming the accepted extensions. Call it before a long run, so a bad
    ``--out`` is refused before the work, not after."""
    p = Path(path)
    if p.suffix.lower() not in RESULT_SUFFIXES:
        raise ConfigError(
            f"cannot write a result to {p}: a result file must end in .json (one strict JSON file, arrays inside) or "
            f".npz (a NumPy archive holding the JSON and one array per tensor), not {p.suffix or 'no extension'!r}; "
            "e.g. --out results/pgd.json")
    if p.is_dir():
        raise ConfigError(f"cannot write a result to {p}: it is a folder; name a file ending in .json or .npz")
    return p


# ---------------------------------------------------------------------------------------------- arrays
def _to_numpy(t: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """A tensor as a numpy array, plus its torch dtype when numpy has no equivalent (bfloat16: stored bit for bit
    as int16 and viewed back on load)."""
    t = t.detach().cpu()
    try:
        return t.numpy(), None
    except TypeError:
        width = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
        return t.contiguous().view(width).numpy(), str(t.dtype).removeprefix("torch.")


def _encode_inline(arr: np.ndarray) -> str:
    le = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False)
    return base64.b64encode(zlib.compress(le.tobytes(), 6)).decode("ascii")


def _decode_inline(ref: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(ref["dtype"]).newbyteorder("<")
    raw = zlib.decompress(base64.b64decode(ref["base64"], validate=True))
    return np.frombuffer(raw, dtype=dtype).reshape(ref["shape"]).astype(dtype.newbyteorder("="))


def _nested_list(arr: np.ndarray) -> Any:
    """``arr.tolist()`` with non-finite floats encoded explicitly (strict JSON)."""
    out = arr.tolist()
    if arr.dtype.kind in "fc" and not bool(np.isfinite(arr).all()):
        out = encode_floats(out)
    return out


class _Sink:
    """Where the arrays of a result go while it is encoded: inline (``.json``), into archive members (``.npz``) or
    nowhere (``to_dict``: nested lists)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.arrays: dict[str, np.ndarray] = {}
        self.names: set[str] = set()

    def put(self, tag: str, key: str, arr: np.ndarray, torch_dtype: str | None) -> Any:
        if self.mode == "plain":
            return _nested_list(arr)
        if arr.dtype.hasobject:
            raise TypeError(f"cannot serialize an object array in a result field ({key})")
        name, i = key, 1
        while name in self.names:  # keys of dicts may contain dots: never let two arrays share a name
            name, i = f"{key}~{i}", i + 1
        self.names.add(name)
        ref: dict[str, Any] = {tag: name, "dtype": str(arr.dtype), "shape": list(arr.shape)}
        if torch_dtype is not None:
            ref["torch_dtype"] = torch_dtype
        if self.mode == "inline":
            ref["base64"] = _encode_inline(arr)
        else:
            self.arrays[name] = arr
        return ref


def _to_jsonable(value: Any, sink: _Sink, key: str) -> Any:
    if isinstance(value, Result):
        out = {"__result__": type(value).__name__}
        for f in dataclasses.fields(value):
            out[f.name] = _to_jsonable(getattr(value, f.name), sink, f"{key}.{f.name}".lstrip("."))
        return out
    if isinstance(value, torch.Tensor):
        arr, torch_dtype = _to_numpy(value)
        if torch_dtype is not None and sink.mode == "plain":  # nested lists of the values, not of their bits
            arr, torch_dtype = value.detach().cpu().float().numpy(), None
        return sink.put("__tensor__", key, arr, torch_dtype)
    if isinstance(value, np.ndarray):
        return sink.put("__ndarray__", key, value, None)
    if isinstance(value, np.generic):
        return _to_jsonable(value.item(), sink, key)
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v, sink, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, sink, f"{key}.{i}") for i, v in enumerate(value)]
    if isinstance(value, float) and not np.isfinite(value):
        return {FLOAT_KEY: "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot serialize a {type(value).__name__} in a result field ({key})")


def _array_of(value: dict[str, Any], tag: str, arrays: Any) -> Any:
    arr = _decode_inline(value) if "base64" in value else np.array(arrays[value[tag]])
    if tag == "__ndarray__":
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if "torch_dtype" in value:
        t = t.view(getattr(torch, value["torch_dtype"]))
    return t


def _from_jsonable(value: Any, arrays: Any) -> Any:
    if isinstance(value, dict):
        if "__result__" in value:
            cls = _REGISTRY.get(value["__result__"])
            if cls is None:
                raise ConfigError(
                    f"unknown result type {value['__result__']!r}: import the module that defines it first"
                )
            kwargs = {k: _from_jsonable(v, arrays) for k, v in value.items() if k != "__result__"}
            names = {f.name for f in dataclasses.fields(cls) if f.init}
            return cls(**{k: v for k, v in kwargs.items() if k in names})
        for tag in ("__tensor__", "__ndarray__"):
            if tag in value:
                return _array_of(value, tag, arrays)
        if FLOAT_KEY in value:
            return decode_floats(value)
        return {k: _from_jsonable(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v, arrays) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- reading files
def _read_npz(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if JSON_MEMBER not in names:
            raise CorruptFileError(f"{path} is a NumPy archive but not a robustlens result (no {JSON_MEMBER} "
                                   "member); load it with numpy.load")
        payload = json.loads(zf.read(JSON_MEMBER))
        arrays = {}
        for name in names:
            if name.endswith(".npy"):
                with zf.open(name) as f:
                    arrays[name[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
    return payload, arrays


def _read_legacy_arrays(path: Path, payload: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of a result written by robustlens < 0.2 (a JSON file with an .npz beside it)."""
    if not payload.get("arrays"):
        return {}
    with np.load(path.parent / payload["arrays"], allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _read(path: Path) -> tuple[dict[str, Any], Any]:
    if not path.is_file():
        raise ConfigError(f"result file {path} not found; check the path")
    with open(path, "rb") as f:
        head = f.read(4)
    try:
        if head == b"PK\x03\x04":
            payload, arrays = _read_npz(path)
        else:
            payload = json.loads(path.read_bytes())
            arrays = _read_legacy_arrays(path, payload) if isinstance(payload, dict) else {}
    except CorruptFileError:
        raise
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CorruptFileError(f"{path} is not a robustlens result file or is damaged ({type(e).__name__}: "
                               f"{str(e)[:200]}); write it again") from e
    if not isinstance(payload, dict) or "data" not in payload:
        raise CorruptFileError(f"{path} is not a robustlens result file (no 'data' entry)")
    return payload, arrays


def _inline_arrays(value: Any, out: dict[str, np.ndarray]) -> None:
    if isinstance(value, dict):
        name = value.get("__tensor__", value.get("__ndarray__"))
        if isinstance(name, str) and "base64" in value:
            out[name] = _decode_inline(value)
            return
        for v in value.values():
            _inline_arrays(v, out)
    elif isinstance(value, list):
        for v in value:
            _inline_arrays(v, out)


def read_document(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The raw JSON document of a result file (any format, any version) and its arrays by reference name, without
    rebuilding the result: for tools that walk results generically (e.g. comparing two runs number by number)."""
    p = Path(path)
    payload, arrays = _read(p)
    arrays = dict(arrays)
    try:
        _inline_arrays(payload, arrays)
    except (ValueError, KeyError, TypeError, zlib.error) as e:
        raise CorruptFileError(f"{p} is a damaged robustlens result ({type(e).__name__}: {str(e)[:200]})") from e
    return payload, arrays


def _short(value: Any, depth: int = 0) -> str:
    """A short text for one field of a result's repr."""
    if isinstance(value, torch.Tensor):
        shape = "x".join(str(d) for d in value.shape) or "scalar"
        if value.numel() == 1:
            return f"Tensor({value.item():.4g})" if value.is_floating_point() else f"Tensor({value.item()})"
        return f"Tensor({shape} {str(value.dtype).removeprefix('torch.')})"
    if isinstance(value, np.ndarray):
        return f"ndarray({'x'.join(str(d) for d in value.shape)} {value.dtype})"
    if isinstance(value, Result):
        return f"{type(value).__name__}(...)" if depth else repr(value)
    if isinstance(value, (list, tuple)):
        if len(value) > 4 or depth:
            return f"[{len(value)} items]"
        return "[" + ", ".join(_short(v, depth + 1) for v in value) + "]"
    if isinstance(value, dict):
        if len(value) > 4 or depth:
            return f"{{{len(value)} keys}}"
        return "{" + ", ".join(f"{k!r}: {_short(v, depth + 1)}" for k, v in value.items()) + "}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------------------------------------- the base class
@dataclasses.dataclass
class Result:
    """Base class of every typed result: ``to_dict()``, ``to_json()``, ``save(path)``, ``load(path)``."""

    kind: ClassVar[str] = "result"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls
        if "__repr__" not in cls.__dict__:  # @dataclass keeps a __repr__ the class already has: the short one
            cls.__repr__ = Result.__repr__  # type: ignore[method-assign]

    def __repr__(self) -> str:
        """``AttackResult(attack='pgd', p=inf, clean=Tensor(100x1x28x28 float32), ...)``: every field, tensors as
        their shape and dtype, long lists and dicts abbreviated (never a dump of the values)."""
        fields = ", ".join(f"{f.name}={_short(getattr(self, f.name))}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field: tensors and arrays become nested lists, non-finite floats
        ``{"__float__": "nan" | "inf" | "-inf"}``, so ``json.dumps(r.to_dict(), allow_nan=False)`` always works."""
        out = _to_jsonable(self, _Sink("plain"), "")
        assert isinstance(out, dict)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        """Strict JSON text of :meth:`to_dict` (never a bare ``NaN`` or ``Infinity``)."""
        return dumps_strict(self.to_dict(), indent=indent)

    def _payload(self, sink: _Sink) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "type": type(self).__name__, "data": _to_jsonable(self, sink, "")}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to the one file ``path`` (``.json`` or ``.npz``, see the module docstring), atomically.

        Returns the path written. Raises :class:`~robustlens.errors.ConfigError` for another extension and
        :class:`~robustlens.errors.StorageError` when the disk refuses (the old file at ``path`` is then unchanged).
        """
        p = check_result_path(path)
        if p.suffix.lower() == ".json":
            text = dumps_strict(self._payload(_Sink("inline")), indent=2)
            atomic_write_bytes(p, text.encode())
            return p
        sink = _Sink("archive")
        text = dumps_strict(self._payload(sink), indent=2)
        with atomic_replace(p) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(JSON_MEMBER, text)
            for name, arr in sink.arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
        return p

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str]) -> T:
        """Read a result written by :meth:`save` (or by an earlier version: JSON with an ``.npz`` beside it).

        Raises :class:`~robustlens.errors.CorruptFileError` for a file that is not a robustlens result or is damaged,
        and ``TypeError`` when it holds another type of result than ``cls``.
        """
        p = Path(path)
        payload, arrays = _read(p)
        try:
            obj = _from_jsonable(payload["data"], arrays)
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, zlib.error) as e:
            raise CorruptFileError(f"{p} is a damaged robustlens result ({type(e).__name__}: {str(e)[:200]}); "
                                   "write it again") from e
        if not isinstance(obj, cls):
            raise TypeError(f"{p} holds a {type(obj).__name__}, not a {cls.__name__}")
        return obj


__all__ = ["RESULT_SUFFIXES", "Result", "SCHEMA_VERSION", "atomic_write_bytes", "check_result_path", "read_document"]
