"""Process-group setup for ``torchrun``: one process per device, DistributedDataParallel.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and the rendezvous address); without them the run
is a single process. NCCL is used on GPUs, gloo on CPU.

Joining waits at most MULTIDIFF_DIST_TIMEOUT seconds (default 120) for every process to reach
MASTER_ADDR:MASTER_PORT, not PyTorch's 30 minutes: a process group that never forms (a variable
set by hand, a process that died at start) is reported, not waited on in silence. Once formed,
the group keeps PyTorch's own timeout for collectives, which a long preview on the main process
must not trip.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

from multidiff.engine.errors import UserError

JOIN_TIMEOUT_S = 120.0


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
        _join(world, "nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    return Context(rank, world, device)


def _join(world: int, backend: str) -> None:
    """The env:// rendezvous of torchrun with a short timeout, then the process group on its store."""
    address = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ or "RANK" not in os.environ:
        raise UserError(f"WORLD_SIZE={world} asks for several processes, but RANK, MASTER_ADDR or MASTER_PORT is "
                        f"not set: start them with torchrun --nproc-per-node {world} -m multidiff train ...")
    text = os.environ.get("MULTIDIFF_DIST_TIMEOUT", str(JOIN_TIMEOUT_S))
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise UserError(f"MULTIDIFF_DIST_TIMEOUT must be a positive number of seconds, got {text!r}")
    process = os.environ["RANK"]
    print(f"process {process} of {world}: joining the process group at {address} (waiting up to {seconds:g} s; "
          f"MULTIDIFF_DIST_TIMEOUT sets the limit)", file=sys.stderr, flush=True)
    try:
        store, rank, world = next(dist.rendezvous("env://", timeout=timedelta(seconds=seconds)))
    except (RuntimeError, ValueError, OSError) as e:
        raise UserError(f"no process group formed at {address} within {seconds:g} s (process {process} of {world}: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}); were all {world} processes "
                        f"started?") from None
    store.set_timeout(default_pg_timeout)
    dist.init_process_group(backend, store=dist.PrefixStore("default_pg", store), rank=rank, world_size=world)


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
