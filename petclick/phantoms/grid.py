"""The voxel grid of a phantom and its body frame in millimetres.

Anatomy is described in a body frame: u lateral (+ towards the patient's left), v antero-
posterior (+ posterior), w depth below the vertex (+ towards the feet), all in mm. Voxel
index i follows u, j follows v, k runs from the thighs (k=0) up to the head, as in DICOM-derived
autoPET NIfTIs. The affine maps (i, j, k) to RAS world mm (x = -u, y = -v, z = -w).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# A realistic whole-body PET field of view: 400 x 400 x 326 voxels of 2.04 x 2.04 x 3 mm.
DEFAULT_FOV_MM = (816.0, 816.0, 978.0)


def derive_spacing(shape: tuple[int, int, int], fov_mm: tuple[float, float, float] = DEFAULT_FOV_MM) -> tuple[float, float, float]:
    """Voxel size that makes `shape` cover the default whole-body field of view."""
    return tuple(float(f) / int(n) for f, n in zip(fov_mm, shape))  # type: ignore[return-value]


@dataclass
class Grid:
    """Voxel grid with body-frame coordinate vectors (float32, mm) along each axis."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    w_top: float = -20.0  # body-frame depth of the top slice (k = Z-1): the vertex lies 20 mm below it
    u: np.ndarray = field(init=False, repr=False)
    v: np.ndarray = field(init=False, repr=False)
    w: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        nx, ny, nz = self.shape
        sx, sy, sz = self.spacing
        self.u = ((np.arange(nx) - (nx - 1) / 2.0) * sx).astype(np.float32)
        self.v = ((np.arange(ny) - (ny - 1) / 2.0) * sy).astype(np.float32)
        self.w = (self.w_top + (nz - 1 - np.arange(nz)) * sz).astype(np.float32)

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-RAS affine: x = -u, y = -v, z = -w."""
        nx, ny, nz = self.shape
        sx, sy, sz = self.spacing
        aff = np.diag([-sx, -sy, sz, 1.0])
        aff[:3, 3] = [(nx - 1) / 2.0 * sx, (ny - 1) / 2.0 * sy, -self.w_top - (nz - 1) * sz]
        return aff

    @property
    def w_range(self) -> tuple[float, float]:
        """Body-frame depth covered by the grid (top, bottom) in mm."""
        return float(self.w[-1]), float(self.w[0])

    def index_of(self, point_uvw) -> tuple[int, int, int]:
        """Nearest voxel index of a body-frame point (may lie outside the grid)."""
        u, v, w = point_uvw
        sx, sy, sz = self.spacing
        return (int(round(u / sx + (self.shape[0] - 1) / 2.0)),
                int(round(v / sy + (self.shape[1] - 1) / 2.0)),
                int(round(self.shape[2] - 1 - (w - self.w_top) / sz)))

    def slices(self, lo, hi, margin_vox: int = 0) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels whose centres lie in the box [lo, hi] (u, v, w mm); None if empty."""
        out = []
        for axis, (a, b) in enumerate(zip(lo, hi)):
            coords = (self.u, self.v, self.w)[axis]
            n = coords.shape[0]
            step = float(coords[1] - coords[0]) if n > 1 else 1.0
            first = float(coords[0])
            i0, i1 = (a - first) / step, (b - first) / step
            if i0 > i1:
                i0, i1 = i1, i0
            start = max(0, math.ceil(i0 - 1e-6) - margin_vox)
            stop = min(n, math.floor(i1 + 1e-6) + 1 + margin_vox)
            if stop <= start:
                return None
            out.append(slice(start, stop))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, sl: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable (n,1,1), (1,n,1), (1,1,n) coordinate vectors of a box of slices."""
        return (self.u[sl[0]][:, None, None], self.v[sl[1]][None, :, None], self.w[sl[2]][None, None, :])
