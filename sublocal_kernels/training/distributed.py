"""Distributed set-up under ``torchrun``: the process group, the device and the per-step seed.

One process per GPU (or a few on CPU, gloo). Every rank sees the same global batches and takes
every ``W``-th sequence of each; rank 0 writes the files. Outside ``torchrun`` the context is
one process (rank 0 of 1) and nothing here talks to other processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["DistributedContext", "distributed_context", "resolve_device", "step_seed", "global_sum", "barrier"]


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def distributed_context(device: torch.device) -> DistributedContext:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1): gloo on CPU,
    NCCL on CUDA; one process per GPU (``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, ctx: DistributedContext | None = None) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` (this process's ``LOCAL_RANK`` GPU) or
    ``cuda:N``. Raises ``ValueError`` for any other name and for a GPU this machine lacks."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {name!r} is not available: {why} (torch {torch.__version__})")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} is not available: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    return device


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The dropout seed of one step: a function of the run's seed and the step's place only."""
    return int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1)[0])


def global_sum(acc: torch.Tensor, ctx: DistributedContext) -> float:
    """The sum of every rank's ``acc`` (a collective when distributed)."""
    if ctx.active:
        import torch.distributed as dist

        acc = acc.clone()
        dist.all_reduce(acc)
    return float(acc)


def barrier(ctx: DistributedContext) -> None:
    """Wait for every rank (nothing to wait for outside ``torchrun``)."""
    if ctx.active:
        import torch.distributed as dist

        dist.barrier()
