"""The files robustlens writes: one atomic writer and one strict-JSON encoding.

- :func:`atomic_replace` is the one way robustlens replaces a file: the new content goes to a temporary file in the
  same folder, is flushed to disk (``fsync``) and renamed over the target (``os.replace``), so a reader, a kill or a
  full disk sees the old file or the new one, never a mix. On any error the temporary file is removed and the old
  file is untouched. The temporary file is created as ``open()`` creates files (mode ``0o666`` less the umask), so a
  shared folder or a web server can read what robustlens writes wherever the user's umask lets it (``mkstemp``'s
  private ``0600`` would not). :func:`atomic_write_bytes` is the common case.
- :func:`dumps_strict` writes strict JSON (RFC 8259: no bare ``NaN`` / ``Infinity``): a non-finite float becomes
  ``{"__float__": "nan" | "inf" | "-inf"}`` at any depth, and :func:`decode_floats` turns those back into floats.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import StorageError

FLOAT_KEY = "__float__"
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


# ---------------------------------------------------------------------------------------------- atomic writes
def _new_temp(path: Path) -> Path:
    """Create an empty temporary file beside ``path`` with the umask's permissions; return its path."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")  # pragma: no cover


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_replace(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Replace ``path`` atomically with what the ``with`` body writes to the temporary path it is given.

    ``with atomic_replace("out/model.safetensors") as tmp: writer(tmp)``: when the body returns, ``tmp`` is flushed
    to disk and renamed to ``path``; when it raises, ``tmp`` is removed and ``path`` keeps its old content. An
    operating-system error (a full disk, a read-only folder) is raised as :class:`~robustlens.errors.StorageError`,
    whose message says what to do; other errors propagate unchanged.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp(path)
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
        yield tmp
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:  # a writer that re-created the file (safetensors does)
            os.chmod(tmp, mode)
        _fsync(tmp)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        size = ""
        with contextlib.suppress(OSError, TypeError):
            size = f" ({tmp.stat().st_size:,} bytes)" if tmp is not None else ""
        raise StorageError(
            f"could not write {path}{size}: {e.strerror or e}. Free some space or choose a folder you can write "
            "to; the file already at that path (if any) is unchanged", e.errno, e.strerror) from e
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_replace`: the old content stays if anything fails."""
    with atomic_replace(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------- strict JSON
def encode_floats(value: Any) -> Any:
    """``value`` with every non-finite float (at any depth of dicts, lists and tuples) as ``{"__float__": ...}``."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {FLOAT_KEY: "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, Mapping):
        return {k: encode_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_floats(v) for v in value]
    return value


def decode_floats(value: Any) -> Any:
    """The inverse of :func:`encode_floats`."""
    if isinstance(value, dict):
        if set(value) == {FLOAT_KEY} and value[FLOAT_KEY] in _NONFINITE:
            return _NONFINITE[value[FLOAT_KEY]]
        return {k: decode_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_floats(v) for v in value]
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes ``NaN`` or ``Infinity``: non-finite floats are encoded explicitly
    (:func:`encode_floats`), and anything JSON cannot hold raises instead of being written."""
    return json.dumps(encode_floats(value), allow_nan=False, **kwargs)


__all__ = ["atomic_replace", "atomic_write_bytes", "decode_floats", "dumps_strict", "encode_floats"]
