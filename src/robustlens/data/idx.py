"""MNIST-family data in the IDX format (LeCun et al., 1998): MNIST and Fashion-MNIST (Xiao et al., 2017).

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions, then each dimension as
uint32) followed by the raw array. Both the gzip-compressed (``.gz``) and the raw files are read.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import ConfigError, CorruptFileError
from .download import file_digest

_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _checksum_error(p: Path, expected: str, actual: str) -> CorruptFileError:
    return CorruptFileError(
        f"{p} failed its md5 check: expected {expected}, got {actual} ({p.stat().st_size} bytes). The file is "
        "corrupt or truncated (e.g. an interrupted download): delete it and download it again "
        "(load_dataset(..., download=True) does this)."
    )


def read_idx(path: str | os.PathLike[str], md5: str | None = None, raw_md5: str | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a NumPy array, checking the header against the file size.

    Args:
        path: the file.
        md5: expected md5 of the ``.gz`` file as distributed; when it differs (e.g. a re-compressed copy) the
            decompressed bytes must match ``raw_md5`` instead.
        raw_md5: expected md5 of the uncompressed IDX bytes.

    Raises:
        CorruptFileError: a checksum mismatch, a truncated gzip stream or a size that contradicts the header.
    """
    p = Path(path)
    gz = p.suffix == ".gz"
    packed_ok = False
    if gz and md5 is not None:
        actual = file_digest(p, "md5")
        packed_ok = actual == md5
    try:
        raw = gzip.open(p).read() if gz else p.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        if gz and md5 is not None:
            raise _checksum_error(p, md5, actual) from e
        raise CorruptFileError(f"{p} is not a complete gzip file ({e}); delete it and download it again") from e
    if not packed_ok and raw_md5 is not None:
        raw_actual = hashlib.md5(raw).hexdigest()
        if raw_actual != raw_md5:
            if gz and md5 is not None:
                raise _checksum_error(p, md5, actual)
            raise _checksum_error(p, raw_md5, raw_actual)
    elif gz and md5 is not None and not packed_ok:
        raise _checksum_error(p, md5, actual)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise CorruptFileError(f"{p} is not an IDX file (bad magic number {raw[:4].hex()}); "
                               "delete it and download it again")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptFileError(f"{p} is truncated inside its header; delete it and download it again")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise CorruptFileError(f"{p} holds {len(raw)} bytes but its header {dims} needs {expected}: the file is "
                               "truncated or corrupt; delete it and download it again")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def find_file(folders: list[Path], stem: str) -> Path | None:
    """The first of ``<folder>/<stem>.gz`` or ``<folder>/<stem>`` (also with ``-idx`` spelled ``.idx``) found."""
    alt = stem.replace("-idx", ".idx")
    for folder in folders:
        for name in (f"{stem}.gz", stem, f"{alt}.gz", alt):
            if (folder / name).is_file():
                return folder / name
    return None


def load_idx_pair(folders: list[Path], prefix: str, dataset: str,
                  checksums: dict[str, tuple[str, str | None]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` uint8 and labels ``(N,)`` of ``<prefix>-images-idx3-ubyte`` / ``-labels-idx1-ubyte``.

    ``checksums`` maps a file stem to its ``(gz md5, raw md5)``; files with an entry are verified.
    """
    sums = checksums or {}
    img = find_file(folders, f"{prefix}-images-idx3-ubyte")
    lab = find_file(folders, f"{prefix}-labels-idx1-ubyte")
    if img is None or lab is None:
        missing = [n for n, f in ((f"{prefix}-images-idx3-ubyte[.gz]", img), (f"{prefix}-labels-idx1-ubyte[.gz]", lab))
                   if f is None]
        raise ConfigError(f"{dataset}: {', '.join(missing)} not found in {', '.join(map(str, folders))}; pass "
                          "root= pointing at the folder that holds the IDX files, or download=True to fetch them")
    x = read_idx(img, *sums.get(f"{prefix}-images-idx3-ubyte", (None, None)))
    y = read_idx(lab, *sums.get(f"{prefix}-labels-idx1-ubyte", (None, None)))
    if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise CorruptFileError(f"{dataset}: {img.name} has shape {x.shape} but {lab.name} has {y.shape}; "
                               "expected (N, H, W) images and N labels from the same split")
    return x, y
