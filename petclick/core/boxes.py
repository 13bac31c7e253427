"""Bounding boxes of masks: the crop every per-component or per-mask computation works inside."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def bounding_box(mask: np.ndarray, margin: Sequence[int] | int = 0) -> tuple[slice, ...] | None:
    """Smallest box holding every True voxel, grown by `margin` voxels per axis and clipped to the
    array; None when the mask is empty. One reduction per axis, no coordinate list."""
    margins = np.broadcast_to(np.asarray(margin, int), (mask.ndim,))
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(np.any(mask, axis=other))
        if idx.size == 0:
            return None
        lo = max(int(idx[0]) - int(margins[axis]), 0)
        hi = min(int(idx[-1]) + 1 + int(margins[axis]), mask.shape[axis])
        slices.append(slice(lo, hi))
    return tuple(slices)
