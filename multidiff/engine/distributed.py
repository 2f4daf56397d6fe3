"""Process-group setup for ``torchrun``: one process per device, DistributedDataParallel.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address); without them the run
is a single process. NCCL is used on GPUs, gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> Context:
    """Join torchrun's process group if there is one; the device is this process's GPU when CUDA
    is available, else the CPU, unless ``device`` ("cpu" or "cuda") says otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return Context(rank, world, device)


def cleanup(ctx: Context) -> None:
    if ctx.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def sum_over_ranks(x: torch.Tensor, ctx: Context) -> torch.Tensor:
    if ctx.world > 1:
        dist.all_reduce(x)
    return x


def barrier(ctx: Context) -> None:
    if ctx.world > 1:
        dist.barrier()
