"""Memory of the machine a cache lives on, and cache limits sized to what the caches must hold.

The reader's caches (the model cache of loaded checkpoints, petclick.inference.checkpoint_set.MODELS,
and the exact mode's tile cache, petclick.inference.engine) are sized from what they must hold (the
checkpoints' weights; one pass of tile outputs of every checkpoint) when that fits `share` of the
memory available on their device, and refused otherwise with a message naming what to set: a cache
that silently holds a third of what it needs reloads or recomputes at every click.
"""

from __future__ import annotations

import torch

from petclick.core.errors import InputError

GB = 1024**3
#: The share of a device's available memory a reader cache may take without being set by hand.
CACHE_SHARE = 0.5


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Free memory of `device`: the GPU's free memory for CUDA, the available RAM (psutil) otherwise."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _total = torch.cuda.mem_get_info(dev)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def fit_cache(needed: int, what: str, setting: str, device: torch.device | str = "cpu", share: float = CACHE_SHARE,
              available: int | None = None) -> int:
    """`needed` bytes when they fit `share` of the memory available on `device`; an InputError naming
    `setting` (what to set instead) when they do not."""
    avail = available_bytes(device) if available is None else int(available)
    if needed <= share * avail:
        return int(needed)
    raise InputError(setting, f"{what} needs {needed / GB:.1f} GB, more than {share:.0%} of the {avail / GB:.1f} GB "
                              f"available on {torch.device(device)}: set {setting} to the MB it may take (past it, "
                              "work is repeated), or use fewer checkpoints")
