"""DDP: the torchrun process group a run joins, the DistributedDataParallel wrapper, and the collectives it uses.

Every function is a no-op for one process (``world`` 1), so a single-process run never touches
:mod:`torch.distributed`. A process group is joined only when torchrun launched the run (``RANK`` and
``WORLD_SIZE`` set) and is left again at its end, so :func:`effnet.training.trainer.fit` stays reusable in-process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["process_group", "wrap_ddp", "gather", "all_sum", "all_max", "rank_parameter_diff"]


@contextlib.contextmanager
def process_group() -> Iterator[tuple[int, int, int]]:
    """(rank, world size, local rank); joins torchrun's group when launched by it, leaves it afterwards."""
    if dist.is_available() and dist.is_initialized():
        yield dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        yield 0, 1, 0
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    try:
        yield dist.get_rank(), dist.get_world_size(), local
    finally:
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` when ``world`` > 1 (``model`` itself for one process)."""
    if world == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def gather(value: Any, world: int) -> list[Any]:
    """``value`` of every rank, in rank order."""
    if world == 1:
        return [value]
    every: list[Any] = [None] * world
    dist.all_gather_object(every, value)
    return every


def all_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    """``values`` summed over all processes (unchanged for one process)."""
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_max(value: int, device: torch.device, world: int) -> int:
    """The largest ``value`` of any process (``value`` itself for one process)."""
    if world == 1:
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def rank_parameter_diff(model: nn.Module, world: int) -> float | None:
    """Largest difference of any parameter between ranks (None for one process).

    Only the parameters, which DistributedDataParallel keeps equal on every rank: the buffers (BatchNorm's running
    mean and variance) are updated from each rank's own batches and differ by design unless ``--sync-bn``.
    """
    if world == 1:
        return None
    flat = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).max().item())
