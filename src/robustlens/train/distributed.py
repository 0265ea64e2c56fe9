"""torch.distributed helpers for the training loop (``torchrun --nproc_per_node=N -m robustlens train ...``).

The loop is the same with one process or many: under ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the model
is wrapped in ``DistributedDataParallel``, each rank reads its share of a ``DistributedSampler`` and only rank 0
writes logs and checkpoints. The backend is ``gloo`` on CPU and ``nccl`` on CUDA. This module adds what training
needs (joining the group, :class:`DistInfo`) to the core helpers of :mod:`robustlens.distributed`, which do the work.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from .. import distributed as core


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a distributed run (``world_size == 1`` for a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by ``torchrun`` (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched by ``torchrun``; a no-op for a single process."""
    if core.is_initialized():
        return DistInfo(core.rank(), core.world_size(), int(os.environ.get("LOCAL_RANK", "0")), False)
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    atexit.register(_destroy)
    return DistInfo(core.rank(), core.world_size(), int(os.environ.get("LOCAL_RANK", "0")), True)


def _destroy() -> None:
    if core.is_initialized():
        dist.destroy_process_group()


def teardown(info: DistInfo) -> None:
    """End a distributed run: wait for every rank. The process group stays up for later runs in the same process
    and is destroyed at exit: destroying and re-creating it under one ``torchrun`` reuses the rendezvous store's
    keys, and a rank that re-joins first can connect to its peer's old address (gloo ``connectFullMesh`` fails)."""
    barrier(info)


def barrier(info: DistInfo) -> None:
    """Wait for every rank of the run (a no-op for one process)."""
    if info.enabled:
        core.barrier()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (identity for one process)."""
    return core.all_reduce_sum(values) if info.enabled else values


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` for one process); tensors come back on the
    CPU."""
    return core.all_gather_object(obj) if info.enabled else [obj]
