"""Map a prediction from the network's space back onto the original PET grid (same shape and affine).

The network's space differs from the PET grid by a body crop (an integer voxel shift) and, when
the data were resampled, a spacing change. The first case is a pure copy into a zero volume
(exact, no interpolation); otherwise MONAI's SpatialResample interpolates (bilinear) through the
two affines, zeros outside the network's field of view.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

SHIFT_ATOL = 1e-3


def integer_shift(src_affine: np.ndarray, dst_affine: np.ndarray) -> np.ndarray | None:
    """The integer voxel offset t with src index = dst index + t, or None when the grids differ by
    more than a shift (rotation, spacing, sub-voxel offset)."""
    m = np.linalg.solve(np.asarray(src_affine, np.float64), np.asarray(dst_affine, np.float64))
    if not np.allclose(m[:3, :3], np.eye(3), atol=SHIFT_ATOL):
        return None
    t = m[:3, 3]
    if not np.allclose(t, np.round(t), atol=SHIFT_ATOL):
        return None
    return np.round(t).astype(int)


def to_pet_grid(values: torch.Tensor, src_affine: np.ndarray, pet_affine: np.ndarray,
                pet_shape: Sequence[int]) -> torch.Tensor:
    """`values` (C, ...) on the grid of `src_affine` resampled to the PET grid: (C, *pet_shape),
    on the same device; voxels outside the source are 0."""
    pet_shape = tuple(int(s) for s in pet_shape)
    shift = integer_shift(src_affine, pet_affine)
    if shift is not None:
        out = values.new_zeros((values.shape[0], *pet_shape))
        dst, src = [], []
        for t, n_src, n_dst in zip(shift, values.shape[1:], pet_shape):
            d0, d1 = max(0, -t), min(n_dst, n_src - t)
            if d1 <= d0:
                return out
            dst.append(slice(d0, d1))
            src.append(slice(d0 + t, d1 + t))
        out[(slice(None), *dst)] = values[(slice(None), *src)]
        return out
    from monai.data import MetaTensor
    from monai.transforms import SpatialResample

    src = MetaTensor(values, affine=torch.as_tensor(np.asarray(src_affine, np.float64)))
    res = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=torch.float32)(
        src, dst_affine=torch.as_tensor(np.asarray(pet_affine, np.float64)), spatial_size=pet_shape)
    return torch.as_tensor(res).to(values.device)
