"""Shared resumable-state primitives: canonical fingerprints, manifests, folder ids, output locks."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustlens.errors import ConfigError
from robustlens.state import OutputLock, canonical, check_manifest, diff, folder_id


def test_canonical_nan_equals_nan_at_any_depth() -> None:
    a = {"eps": math.nan, "grid": torch.tensor([1.0, math.nan, math.inf]), "t": (1, -math.inf)}
    assert canonical(a) == canonical(dict(a))
    assert canonical(a)["grid"] == [1.0, "nan", "inf"] and canonical(a)["t"] == [1, "-inf"]
    assert diff(canonical({"a": {"b": 1}}), canonical({"a": {"b": 2}})) == ["a.b: 1 recorded, 2 now"]


def test_manifest_records_checks_and_refuses(tmp_path: Path) -> None:
    fp = {"eps": math.nan, "seed": 0}
    assert check_manifest(tmp_path, fp, resume=True) is False  # written now
    assert check_manifest(tmp_path, fp, resume=True) is True  # NaN matches itself on resume
    with pytest.raises(ConfigError, match="already holds a run"):
        check_manifest(tmp_path, fp, resume=False)
    with pytest.raises(ConfigError, match="seed: 0 recorded, 1 now"):
        check_manifest(tmp_path, {"eps": math.nan, "seed": 1}, resume=True)


def test_folder_ids_never_collide() -> None:
    names = ["std net", "std-net", "std/net", "std_net", "STD net", "", "..", "a" * 200]
    ids = [folder_id(n) for n in names]
    assert len(set(ids)) == len(ids)
    assert all("/" not in i and i not in (".", "..") and len(i) <= 60 for i in ids)
    assert folder_id("std net") == folder_id("std net")


def test_output_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    with OutputLock(tmp_path, "training"):
        with pytest.raises(ConfigError, match="already in use"):
            with OutputLock(tmp_path):
                pass
        code = ("import sys; from robustlens.state import OutputLock\n"
                "try:\n    OutputLock(sys.argv[1]).__enter__()\nexcept Exception as e:\n    print(e); sys.exit(3)")
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
        assert r.returncode == 3 and "in use by another run (pid" in r.stdout
    with OutputLock(tmp_path):  # released on exit
        pass
    # a holder killed without releasing leaves no stale lock: the kernel drops the flock with the process
    code = "import os, sys; from robustlens.state import OutputLock; OutputLock(sys.argv[1]).__enter__(); os._exit(9)"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    with OutputLock(tmp_path):
        pass
