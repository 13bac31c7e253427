"""Connected components of a mask with per-component statistics, computed once and vectorised.

Every post-processing rule works on the same representation: cc3d labels, voxel counts from a
bincount over foreground voxels, SUVmax per component from scipy.ndimage.maximum over the
foreground voxels (one pass for all components), bounding boxes from cc3d.statistics. Rules then
select components with boolean arrays indexed by label (`keep[labels]`), never a per-component
pass over the volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cc3d
import numpy as np
from scipy import ndimage

from petclick.core.boxes import bounding_box

CONNECTIVITY = 18  # the metrics' connectivity: a component here is a lesion there


@dataclass
class Components:
    """Labels 1..n of a boolean mask and each component's size (index 0 = background)."""

    labels: np.ndarray
    n: int
    sizes: np.ndarray
    mask: np.ndarray

    def select(self, keep: np.ndarray) -> np.ndarray:
        """Boolean mask of the components whose entry in `keep` (length n + 1) is True."""
        keep = np.asarray(keep, bool).copy()
        keep[0] = False
        return keep[self.labels]

    def at(self, points: Sequence[Sequence[int]]) -> np.ndarray:
        """Label under each (i, j, k) point (0 where the point is background)."""
        if len(points) == 0:
            return np.zeros(0, np.int64)
        idx = np.asarray(points, dtype=np.int64).reshape(-1, 3)
        return self.labels[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.int64)

    def flags_at(self, points: Sequence[Sequence[int]]) -> np.ndarray:
        """Boolean per label (length n + 1): True for components holding at least one of the points."""
        flags = np.zeros(self.n + 1, bool)
        flags[self.at(points)] = True
        flags[0] = False
        return flags

    def suv_max(self, pet: np.ndarray) -> np.ndarray:
        """SUVmax of every component (length n + 1; entry 0 is 0)."""
        out = np.zeros(self.n + 1, np.float64)
        if self.n:  # foreground voxels only: ndimage sorts its input, the whole volume would cost ~30 ms
            out[1:] = ndimage.maximum(pet[self.mask], self.labels[self.mask], index=np.arange(1, self.n + 1))
        return out

    def boxes(self) -> list:
        """Bounding box (tuple of slices) of every label; entry 0 covers the background."""
        return cc3d.statistics(self.labels)["bounding_boxes"]


def components(mask: np.ndarray, connectivity: int = CONNECTIVITY) -> Components:
    """Label the connected components of a boolean mask (cc3d) and count their voxels."""
    mask = np.asarray(mask, bool)
    n_fg = int(np.count_nonzero(mask))
    if n_fg == 0:
        return Components(np.zeros(mask.shape, np.uint8), 0, np.zeros(1, np.int64), mask)
    labels, n = cc3d.connected_components(np.ascontiguousarray(mask).view(np.uint8), connectivity=connectivity,
                                          return_N=True, max_labels=n_fg)
    sizes = np.bincount(labels[mask], minlength=int(n) + 1).astype(np.int64)
    sizes[0] = 0
    return Components(labels, int(n), sizes, mask)


bbox = bounding_box  # the shared implementation (petclick.core.boxes)


def clicks_inside(points: Sequence[Sequence[int]], shape: Sequence[int]) -> list[tuple[int, int, int]]:
    """The points that lie inside a volume of `shape` (others are ignored by every rule)."""
    out = []
    for p in points:
        if all(0 <= int(c) < int(s) for c, s in zip(p, shape)):
            out.append(tuple(int(c) for c in p))
    return out
