from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def shared_data_dir() -> Path:
    """The offline data copies beside the checkout (``../shared/data``), or ``$ROBUSTLENS_SHARED_DATA``."""
    env = os.environ.get("ROBUSTLENS_SHARED_DATA")
    p = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not p.is_dir():
        raise RuntimeError(f"offline data not found at {p}; set ROBUSTLENS_SHARED_DATA to the shared/data folder")
    return p


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_dir()


@pytest.fixture(autouse=True)
def _seed_global_generators(request: pytest.FixtureRequest) -> None:
    """Seed Python, NumPy and torch from the test's id, so tests that draw from the global generators give the same
    numbers whatever ran before them (and whichever subset runs)."""
    from robustlens.seeding import seed_everything, stable_hash

    seed_everything(stable_hash(request.node.nodeid) % (2**31))
