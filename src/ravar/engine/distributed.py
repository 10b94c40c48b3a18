"""Running under `torchrun` (one or several nodes): the process group, the device of each rank,
evaluation shards without padding, and gathering results from all ranks.

The process group is only created by `distributed_session`, which the train / eval commands
enter; importing this module starts nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ravar.errors import RavarError
from ravar.util.devices import resolve_device as resolve_device_of_user


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and device of this process (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    def all_gather_objects(self, obj: Any) -> list[Any]:
        """`obj` of every rank, in rank order (just `[obj]` when not distributed)."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def any_true(self, flag: bool) -> bool:
        """True on every rank when `flag` is True on any rank."""
        if not self.is_distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def sum_floats(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over ranks."""
        if not self.is_distributed or not values:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def broadcast_module(self, module: nn.Module) -> None:
        """Give every rank the weights rank 0 has in `module`."""
        if not self.is_distributed:
            return
        with torch.no_grad():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)


def env_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        value = os.environ["WORLD_SIZE"]
        raise RavarError(f"environment WORLD_SIZE={value!r}: not an integer") from None


def resolve_device(requested: str | torch.device | None, local_rank: int = 0) -> torch.device:
    """This rank's device for `--device` (None: CUDA when available, else the CPU). "cuda"
    without an index is the GPU of `local_rank`; an explicit index ("cuda:1") is kept, and
    refused when several ranks would share it. RavarError for a device this machine lacks."""
    device = resolve_device_of_user(requested)
    if device.type != "cuda":
        return device
    if device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    elif env_world_size() > 1:
        raise RavarError(
            f"--device {device}: under torchrun every rank would use the same GPU; "
            "pass --device cuda (each rank takes the GPU of its LOCAL_RANK)"
        )
    torch.cuda.set_device(device)
    return device


@contextmanager
def distributed_session(device: str | None = None) -> Iterator[DistContext]:
    """The DistContext of this process; under torchrun (WORLD_SIZE > 1) it creates the process
    group (nccl on CUDA, gloo on CPU) and destroys it on exit."""
    world = env_world_size()
    if world <= 1:
        yield DistContext(device=resolve_device(device))
        return
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise RavarError(f"WORLD_SIZE={world} but environment {key} is not set (use torchrun)")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    dev = resolve_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    created = not dist.is_initialized()
    if created:
        if dev.type == "cuda":
            dist.init_process_group(backend=backend, device_id=dev)
        else:
            dist.init_process_group(backend=backend)
    try:
        yield DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Indices of `n` items that `rank` evaluates: every index exactly once over all ranks,
    none repeated (no padding), shard sizes differing by at most one."""
    return list(range(rank, n, world_size))
