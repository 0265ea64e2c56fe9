"""torch.distributed in one place: where this process sits in a run, and the collectives robustlens uses.

Every helper works unchanged in a single process (no process group, or a group of one): ``rank() == 0``,
``world_size() == 1``, ``barrier()`` returns at once and the collectives return their input. The evaluation runner
(:func:`robustlens.runner.run_evaluation`) and training (:mod:`robustlens.train.distributed`, which adds joining the
group under ``torchrun`` and ``DistributedDataParallel``) both go through these.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is up in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of processes in the group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def enabled() -> bool:
    """Whether collectives are needed: a process group of more than one process."""
    return world_size() > 1


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if enabled():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not enabled():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself in a single process)."""
    if not enabled():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum of a tensor over ranks, as a new tensor (the tensor itself in a single process)."""
    if enabled():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


__all__ = ["all_gather_object", "all_reduce_sum", "barrier", "broadcast_object", "enabled", "is_initialized", "rank",
           "world_size"]
