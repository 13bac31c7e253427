"""Distributed training context: torchrun (WORLD_SIZE > 1) gets a process group and DDP; one
process (CPU or one GPU) runs the same code with world_size 1.

Each rank trains on its LOCAL_RANK's GPU (a `training.device` of `cuda` without an index means that
one), with its share of the node's CPU threads (training.threads), and the process group's collective
timeout comes from the run plan (`training.dist_timeout_s`, petclick.training.plan.dist_timeout_s).
The ranks share validation (each validates its share of the cases; `all_gather` joins the rows);
only rank 0 writes checkpoints, logs and progress."""

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

    def all_gather(self, items: list) -> list:
        """Every rank's `items` concatenated in rank order (itself without a process group)."""
        if self.world_size <= 1:
            return list(items)
        out: list = [None] * self.world_size
        dist.all_gather_object(out, list(items))
        return [x for part in out for x in part]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel when world_size > 1, else the model itself."""
        if self.world_size <= 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper."""
    return model.module if hasattr(model, "module") else model


def rank_device(device: str | None = None, local_rank: int | None = None) -> torch.device:
    """The device of this rank: cuda:<LOCAL_RANK> for `cuda` without an index, for `auto` / None when
    CUDA is available; CPU otherwise; an explicit `cuda:N` or `cpu` as given."""
    local = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else int(local_rank)
    if device in (None, "", "auto"):
        return torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", local)
    return dev


def init_distributed(device: str | None = None, timeout_s: float | None = None) -> DistContext:
    """Join torchrun's process group when WORLD_SIZE > 1 (NCCL on CUDA, Gloo on CPU) with a collective
    timeout of `timeout_s` (None: torch's default); the device is rank_device(device)."""
    from datetime import timedelta

    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = rank_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        kwargs = {} if timeout_s is None else {"timeout": timedelta(seconds=float(timeout_s))}
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", init_method="env://", **kwargs)
    rank = dist.get_rank() if world > 1 else 0
    return DistContext(rank=rank, world_size=world, device=dev)


def close_distributed(ctx: DistContext) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
