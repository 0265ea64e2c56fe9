"""Fetching data files with checksum verification (standard library only: ``urllib``, ``hashlib``).

A download goes to ``<file>.part`` and is renamed only after its checksum matches, so an interrupted or corrupted
transfer never leaves a file that looks complete. A file already on disk is verified before it is used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import ConfigError, CorruptFileError


@dataclass(frozen=True)
class Resource:
    """A file to fetch: its name, the URLs to try in order, and its checksum (``md5`` or ``sha256`` hex digest)."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | os.PathLike[str], md5: str | None = None, sha256: str | None = None,
                url: str | None = None) -> None:
    """Raise :class:`~robustlens.errors.CorruptFileError` unless ``path`` has the expected checksum.

    The message names the file, the expected and the actual digest, and says to delete the file and fetch it
    again (with ``download=True``, or from ``url``).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p} does not exist; pass download=True to fetch it or point root= at its folder")
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is None:
            continue
        actual = file_digest(p, algorithm)
        if actual != expected.lower():
            where = f" from {url}" if url else ""
            raise CorruptFileError(
                f"{p} failed its {algorithm} check: expected {expected}, got {actual} "
                f"({p.stat().st_size} bytes). The file is corrupt or truncated (e.g. an interrupted download): "
                f"delete it and download it again{where} (load_dataset(..., download=True) does this)."
            )


Fetch = Callable[[str, Path], None]


def _urllib_fetch(url: str, dest: Path) -> None:
    """Copy ``url`` to ``dest`` with a progress bar."""
    req = urllib.request.Request(url, headers={"User-Agent": "robustlens"})
    with urllib.request.urlopen(req, timeout=60) as r, open(dest, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name.removesuffix(".part"), leave=False,
                  disable=total is not None and total < (1 << 20)) as bar:
            while block := r.read(1 << 16):
                f.write(block)
                bar.update(len(block))


def download_file(resource: Resource, folder: str | os.PathLike[str], fetch: Fetch | None = None) -> Path:
    """Make sure ``folder/resource.filename`` exists with the right checksum, downloading it when missing.

    URLs are tried in order; a download whose checksum does not match is discarded and the next URL is tried.
    An existing file that fails the check is *not* overwritten: the error says to delete it.

    Args:
        resource: what to fetch.
        folder: where to put it (created if needed).
        fetch: ``fetch(url, dest)`` copies ``url`` to ``dest`` (default: ``urllib``); injectable for tests.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / resource.filename
    if dest.exists():
        verify_file(dest, resource.md5, resource.sha256, resource.urls[0] if resource.urls else None)
        return dest
    fetch = fetch or _urllib_fetch
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    for url in resource.urls:
        try:
            fetch(url, part)
            verify_file(part, resource.md5, resource.sha256, url)
        except (OSError, urllib.error.URLError, CorruptFileError) as e:
            errors.append(f"{url}: {e}")
            part.unlink(missing_ok=True)
            continue
        os.replace(part, dest)
        return dest
    raise CorruptFileError(
        f"could not download {resource.filename} to {folder}:\n  " + "\n  ".join(errors)
        + "\nCheck the network connection, or fetch the file by hand into that folder."
    )


def extract_tar(archive: str | os.PathLike[str], folder: str | os.PathLike[str], members: Sequence[str]) -> None:
    """Extract the named regular-file members of a tar archive into ``folder`` (no links, no absolute paths)."""
    folder = Path(folder)
    wanted = set(members)
    with tarfile.open(archive, "r:*") as tar:
        for m in tar.getmembers():
            if m.name not in wanted:
                continue
            if not m.isfile() or m.name.startswith("/") or ".." in Path(m.name).parts:
                raise CorruptFileError(f"{archive}: refusing to extract unsafe member {m.name!r}")
            out = folder / m.name
            out.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            tmp = out.with_name(out.name + ".part")
            with src, open(tmp, "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(tmp, out)
            wanted.discard(m.name)
    if wanted:
        raise CorruptFileError(f"{archive} lacks {sorted(wanted)}; delete it and download it again")
