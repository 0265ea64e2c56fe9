"""Resumable state, shared by the evaluation runner, the report and training: fingerprints, manifests, folder ids
and output locks.

- :func:`canonical` turns a configuration into a JSON-ready form in which equal settings compare equal (NaN with
  NaN included: non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` at any depth, tensors too);
- :func:`model_hash` / :func:`tensor_hash` digest weights and data;
- :func:`check_manifest` writes a folder's ``manifest.json`` the first time and, on resume, refuses a folder whose
  manifest differs, listing the settings that differ (:func:`diff`);
- :func:`folder_id` gives a file-system-safe name that two different names never share (``"std net"`` and
  ``"std-net"`` get different folders);
- :class:`OutputLock` refuses an output folder that another live run holds (an ``flock`` on a lock file, released by
  the kernel when the holder dies, so a killed run never leaves a stale lock).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .classifier import Classifier
from .errors import ConfigError
from .files import atomic_write_bytes, dumps_strict

MANIFEST = "manifest.json"
LOCK_FILE = ".robustlens.lock"


# ---------------------------------------------------------------------------------------------- hashing
def _hash_tensor(h: Any, t: Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def model_hash(model: nn.Module | Classifier) -> str:
    """A hex digest of a model's state dict (names, dtypes, shapes and values of every parameter and buffer); for a
    :class:`~robustlens.Classifier` also its bounds and normalization, which change every result.

    Two models with the same weights have the same hash in every process.
    """
    extra = None
    if isinstance(model, Classifier):
        extra = (model.bounds, None if model.mean is None else model.mean.tolist(),
                 None if model.std is None else model.std.tolist())
        model = model.model
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(extra).encode())
    for name, value in sorted(model.state_dict().items()):
        h.update(name.encode())
        if isinstance(value, Tensor):
            _hash_tensor(h, value)
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def tensor_hash(*tensors: Tensor | None) -> str:
    """A hex digest of the dtypes, shapes and bytes of tensors (``None`` allowed)."""
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        if t is None:
            h.update(b"None")
        else:
            _hash_tensor(h, t)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- fingerprints
def _float(v: float) -> float | str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def canonical(value: Any) -> Any:
    """A JSON-ready canonical form of a configuration value: mappings sorted by key, tuples as lists, tensors and
    arrays as nested lists, non-finite floats as strings at any depth (so NaN equals NaN), other objects by repr."""
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, Tensor):
        return canonical(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return canonical(value.tolist())
    if isinstance(value, np.generic):
        return canonical(value.item())
    if isinstance(value, float):
        return _float(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return repr(value)


def diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """One line per setting that differs between two canonical fingerprints (nested keys joined with ``.``)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<missing>"), new.get(k, "<missing>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += diff(a, b, f"{prefix}{k}.")
        elif a != b:
            sa, sb = json.dumps(a)[:60], json.dumps(b)[:60]
            out.append(f"{prefix}{k}: {sa} recorded, {sb} now")
    return out


def read_manifest(path: str | os.PathLike[str], fix: str = "choose an empty folder or start afresh (overwrite)"
                  ) -> dict[str, Any]:
    """The fingerprint stored in a ``manifest.json``; a :class:`ConfigError` ending in ``fix`` if it is unreadable."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        fp = payload["fingerprint"]
        if not isinstance(fp, dict):
            raise TypeError("fingerprint is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is unreadable or not a robustlens manifest ({e}); {fix}") from e
    return fp


def _article(what: str) -> str:
    return f"{'an' if what[:1].lower() in 'aeiou' else 'a'} {what}"


def check_manifest(folder: str | os.PathLike[str], fingerprint: Mapping[str, Any], *, resume: bool,
                   what: str = "run", fix: str = "use the original settings, another folder, or start afresh",
                   again: str = "resume it, start afresh (overwrite), or choose another folder",
                   afresh: str = "start afresh (overwrite)", extra: Mapping[str, Any] | None = None) -> bool:
    """Record ``fingerprint`` in ``folder/manifest.json``, or check it against the one recorded there.

    Returns ``True`` when a matching manifest already existed (the caller may resume from the folder's state) and
    ``False`` when it was written now. A folder that holds another ``what`` (a different fingerprint) is refused on
    resume with the list of differing settings and ``fix``; any existing manifest is refused without ``resume``
    (so nothing is silently overwritten), with ``again`` saying what to do; an unreadable manifest is refused with
    ``afresh`` (how to discard the folder's state). ``extra`` entries (a format version)
    are written beside the fingerprint and not compared. Comparison is on :func:`canonical` forms, so NaN settings
    match themselves.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    fp = canonical(dict(fingerprint))
    if path.exists():
        old = read_manifest(path, f"choose an empty folder or {afresh}")
        if not resume:
            raise ConfigError(f"{folder} already holds {_article(what)}; {again}")
        if old != fp:
            lines = diff(old, fp) or ["(fingerprint differs)"]
            raise ConfigError(f"{folder} holds {_article(what)} with other settings and cannot be resumed with "
                              "these:\n  " + "\n  ".join(lines) + f"\nTo continue, {fix}")
        return True
    payload = {**canonical(dict(extra or {})), "fingerprint": fp}
    atomic_write_bytes(path, dumps_strict(payload, indent=2, sort_keys=True).encode())
    return False


# ---------------------------------------------------------------------------------------------- folder names
def folder_id(name: str) -> str:
    """A file-system-safe folder name for ``name`` that no other name shares: the readable slug plus a short digest
    of the exact name (``"std net"`` -> ``std-net-1b2c3d4e``; ``"std-net"`` -> ``std-net-9f8e7d6c``)."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:48] or "item"
    return f"{s}-{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"


# ---------------------------------------------------------------------------------------------- locks
class OutputLock:
    """An exclusive hold on an output folder for the duration of a run: ``with OutputLock(out, "training"): ...``.

    A second run on the same folder (another process, or the same process twice) is refused with a
    :class:`ConfigError` naming the holder. The lock is an ``fcntl.flock`` on ``folder/.robustlens.lock``: the kernel
    drops it when the holder exits or is killed, so no stale lock survives a crash. The holder removes the lock file
    when it is done (a holder checks, after locking, that the file it locked is still the one at that path, so the
    removal cannot let two runs in). On systems without ``fcntl`` the lock is a no-op.
    """

    _held: set[str] = set()

    def __init__(self, folder: str | os.PathLike[str], what: str = "run") -> None:
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None
        self._key = ""

    def __enter__(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / LOCK_FILE
        key = str(path.resolve())
        if key in OutputLock._held:
            raise ConfigError(f"{self.folder} is already in use by {_article(self.what)} in this process; choose "
                              "another output folder")
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise ConfigError(f"{self.folder} is in use by another {self.what} ({holder}); wait for it to finish "
                                  "or choose another output folder") from None
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder before us removed the file we locked: lock the one now at the path
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd, self._key = fd, key
        OutputLock._held.add(key)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._fd is not None:
            OutputLock._held.discard(self._key)
            try:
                os.unlink(self.folder / LOCK_FILE)  # still holding the lock: nobody else owns this file
            except OSError:
                pass
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


__all__ = [
    "LOCK_FILE",
    "MANIFEST",
    "OutputLock",
    "canonical",
    "check_manifest",
    "diff",
    "folder_id",
    "model_hash",
    "read_manifest",
    "tensor_hash",
]
