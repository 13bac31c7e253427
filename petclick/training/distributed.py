"""Distributed training context: torchrun (WORLD_SIZE > 1) gets a process group and DDP; one
process (CPU or one GPU) runs the same code with world_size 1."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank (a picklable value); itself without a process group."""
        if self.world_size <= 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel when world_size > 1, else the model itself."""
        if self.world_size <= 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper."""
    return model.module if hasattr(model, "module") else model


def init_distributed(device: str | None = None) -> DistContext:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL on CUDA, Gloo on CPU); pick the
    device: `device` if given, else cuda:<LOCAL_RANK> when CUDA is available, else CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device:
        dev = torch.device(device)
    else:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://")
    rank = dist.get_rank() if world > 1 else 0
    return DistContext(rank=rank, world_size=world, device=dev)


def close_distributed(ctx: DistContext) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
