"""Training checkpoints: atomic writes, safe reads (``weights_only``) and the global RNG states they carry, so a
resumed run continues the same random streams (bit-identical final weights on the same machine and device)."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..files import atomic_write_bytes

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "robustlens-train-checkpoint"
CHECKPOINT_VERSION = 1


def rng_state() -> dict[str, Any]:
    """Global RNG states as tensors (loadable with ``torch.load(weights_only=True)``)."""
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_meta": torch.tensor([int(np_state[2]), int(np_state[3])], dtype=torch.int64),
        "numpy_gauss": torch.tensor(float(np_state[4]), dtype=torch.float64),
        "python": torch.tensor(list(py_state[1]), dtype=torch.int64),
        "python_version": int(py_state[0]),
        "python_gauss": None if py_state[2] is None else float(py_state[2]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    meta = state["numpy_meta"].tolist()
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), meta[0], meta[1], float(state["numpy_gauss"]))
    )
    random.setstate((state["python_version"], tuple(state["python"].tolist()), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (temporary file + rename): an interruption never leaves half a file."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)`` (no arbitrary pickle execution)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no checkpoint at {path}; train first, or drop resume")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not a robustlens training checkpoint")
    return payload


__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "CHECKPOINT_VERSION", "load_checkpoint", "rng_state",
           "save_checkpoint", "set_rng_state"]
