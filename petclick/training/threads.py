"""CPU threads of training: torch's intra-op thread count, YAML `training.num_threads`.

`auto` gives the process its share of the cores it may use (all of them, divided by the ranks of a
torchrun job on the node), minus one per loader worker (`data.num_workers`):
on a GPU machine the main process's intra-op threads otherwise compete with the workers that feed
it. OpenMP's wait policy (idle threads sleep, not spin) is set for every petclick process by
petclick.core.threads. benchmarks/bench_training.py --threads-matrix measures both.
"""

from __future__ import annotations

import os
from typing import Any, Mapping


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def local_world_size() -> int:
    """Processes of this torchrun job on this node (LOCAL_WORLD_SIZE), 1 outside torchrun."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def resolve_threads(value: Any, workers: int = 0, ranks: int | None = None) -> int:
    """`auto`/None -> this rank's share of available_cores() (divided by the node's `ranks`, default
    LOCAL_WORLD_SIZE) minus `workers` (at least 1); otherwise a positive int (InputError if not)."""
    from petclick.core.errors import InputError

    if value is None or value == "auto":
        share = available_cores() // max(1, local_world_size() if ranks is None else int(ranks))
        return max(1, share - max(0, int(workers)))
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() not in (str(n), f"{n}.0"):
        raise InputError("training.num_threads", f"must be a positive integer or 'auto', got {value!r}")
    return n


def apply_threads(training: Mapping[str, Any], workers: int = 0) -> int:
    """torch.set_num_threads(training.num_threads) (`auto`: see resolve_threads); returns the count set."""
    import torch

    n = resolve_threads(training.get("num_threads", "auto"), workers)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
