"""Cases shared between torchrun ranks: each rank takes every world_size-th case, the results are
gathered back into the cases' own order, so a report merged on rank 0 equals a one-process run.

Outside torchrun (WORLD_SIZE unset or 1) there is one shard and nothing is exchanged. Under torchrun
the process group is joined once (gloo on CPU, nccl on CUDA, via petclick.training.distributed)
and rows travel with `torch.distributed.all_gather_object`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass
class Shards:
    """This process's rank among world_size ranks."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | None = None) -> "Shards":
        """One shard, or this rank of torchrun's WORLD_SIZE (joining its process group)."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from petclick.training.distributed import init_distributed

        ctx = init_distributed(device or "cpu")
        return cls(ctx.rank, ctx.world_size)

    def close(self) -> None:
        """Leave torchrun's process group (after the last gather)."""
        if self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank (e.g. one run id for all)."""
        if self.world_size <= 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def share(self, items: Sequence[Any]) -> list[Any]:
        """This rank's items: every world_size-th, starting at its rank."""
        return list(items[self.rank::self.world_size])

    def gather(self, rows: list[dict], order: Sequence[Any], key: str) -> list[dict]:
        """Every rank's rows, in the order of `order` (values of row[key]; a key may own several rows)."""
        if self.world_size <= 1:
            return rows
        import torch.distributed as dist

        parts: list[list[dict] | None] = [None] * self.world_size
        dist.all_gather_object(parts, rows)
        rank_of = {k: n for n, k in enumerate(order)}
        merged = [r for part in parts for r in (part or [])]
        return sorted(merged, key=lambda r: rank_of.get(r[key], len(rank_of)))
