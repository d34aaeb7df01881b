"""Data-parallel training under ``torchrun``: which rank this process is, the process group, and each rank's
share of an epoch's batches.

``torchrun --nproc-per-node N -m facemtl train ...`` (or ``facemtl train --nproc-per-node N ...``) starts N
copies of the same command; each one finds RANK / WORLD_SIZE / LOCAL_RANK in its environment. Every rank builds
the same seeded split and the same seeded epoch order (:class:`facemtl.train.loop._Sampler`), then takes every
N-th batch of it (:func:`shard_batches`), so the ranks see disjoint batches that each keep the multi-dataset mix;
gradients are averaged by DistributedDataParallel. ``--batch-size`` is per process: the global batch is N times
it and an epoch has 1/N of the steps.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

__all__ = ["DistInfo", "dist_info", "init_distributed", "shard_batches", "shard_steps", "under_torchrun"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a run: ``world_size`` 1 is plain single-process training."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def dist_info() -> DistInfo:
    """Rank, world size and local rank from the torchrun environment (single process without it)."""
    if not under_torchrun():
        return DistInfo()
    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError:
        from ..errors import ConfigError

        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun)") from None
    return DistInfo(rank, world, local)


def init_distributed(info: DistInfo, device: torch.device, timeout_min: float = 30.0) -> torch.device:
    """Join the process group (``nccl`` on CUDA, ``gloo`` on the CPU); returns the device this rank trains on
    (``cuda:LOCAL_RANK`` on GPUs). No-op for a single process."""
    import torch.distributed as dist

    if not info.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(minutes=timeout_min)}
        if backend == "nccl":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)
    log.info("rank %d/%d (local %d): %s on %s", info.rank, info.world_size, info.local_rank, backend, device)
    return device


def shard_batches(batches: list[T], rank: int, world_size: int) -> list[T]:
    """This rank's share of an epoch's batches: every ``world_size``-th one starting at ``rank``.

    Every rank gets the same number of steps (DDP needs it): the last ``len % world_size`` batches are
    dropped, so the shares are disjoint; only with fewer batches than ranks are some repeated (every rank
    still trains one step).
    """
    if world_size <= 1:
        return batches
    n = shard_steps(len(batches), world_size)
    return [batches[(rank + i * world_size) % len(batches)] for i in range(n)]


def shard_steps(steps: int, world_size: int) -> int:
    """How many steps each rank trains per epoch for ``steps`` global batches (see :func:`shard_batches`)."""
    return steps if world_size <= 1 else max(1, steps // world_size)
