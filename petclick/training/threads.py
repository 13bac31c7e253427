"""CPU threads of training: torch's intra-op thread count and OpenMP's wait policy.

PyTorch's CPU wheels use GNU OpenMP, whose threads spin at every barrier before they sleep. With
as many threads as cores and any other busy process on the machine, a spinning thread burns the
time slice its partner needs, and a training step becomes many times slower (seen: 10x, always
inside backward). `set_omp_defaults()` makes idle OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE)
unless the environment already chose; it must run before torch is imported (petclick.training's
__init__ calls it, which is before a bundle's train.py imports torch). `apply_threads()` sets
torch's intra-op threads from YAML `training.num_threads` (an int, or `auto`: every core the
process may use). benchmarks/bench_training.py --threads-matrix measures both.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

OMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def set_omp_defaults() -> None:
    """Put OMP_DEFAULTS into os.environ where the user set nothing (effective before torch loads);
    PETCLICK_OMP_DEFAULTS=0 keeps OpenMP's own defaults."""
    if os.environ.get("PETCLICK_OMP_DEFAULTS", "1") == "0":
        return
    for key, value in OMP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(value: Any) -> int:
    """`auto`/None -> available_cores(); otherwise a positive int (InputError if not)."""
    from petclick.core.errors import InputError

    if value is None or value == "auto":
        return available_cores()
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(value).strip() not in (str(n), f"{n}.0"):
        raise InputError("training.num_threads", f"must be a positive integer or 'auto', got {value!r}")
    return n


def apply_threads(training: Mapping[str, Any]) -> int:
    """torch.set_num_threads(training.num_threads); returns the count set."""
    import torch

    n = resolve_threads(training.get("num_threads", "auto"))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
