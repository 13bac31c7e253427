"""Map a prediction from the network's space back onto the original PET grid (same shape and affine).

The network's space differs from the PET grid by a body crop (an integer voxel shift) and, when
the data were resampled, a spacing change. The first case is a pure copy into a zero volume
(exact, no interpolation); otherwise MONAI's SpatialResample interpolates (bilinear) through the
two affines, zeros outside the network's field of view, in slabs along the last axis of at most
SLAB_VOXELS output voxels: each output voxel samples the same point as in one pass (the slab's affine is
the PET affine shifted by the slab's first slice), while the sampling grid (28 bytes per output voxel)
stays bounded: about 3 GB in one pass for a 400x400x600 PET grid, 0.25 GB per slab.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

SHIFT_ATOL = 1e-3
#: Output voxels resampled at once (bounds the sampling grid of SpatialResample).
SLAB_VOXELS = 8 * 1024**2


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

    resample = SpatialResample(mode="bilinear", padding_mode="zeros", dtype=torch.float32)
    src_t = torch.as_tensor(np.asarray(src_affine, np.float64))
    out = torch.zeros((values.shape[0], *pet_shape), dtype=torch.float32, device=values.device)
    step = max(1, SLAB_VOXELS // max(1, pet_shape[0] * pet_shape[1]))
    for z0 in range(0, pet_shape[2], step):
        z1 = min(pet_shape[2], z0 + step)
        shift = np.eye(4)
        shift[2, 3] = z0  # slab index k is PET index z0 + k
        slab_affine = torch.as_tensor(np.asarray(pet_affine, np.float64) @ shift)
        res = resample(MetaTensor(values, affine=src_t.clone()), dst_affine=slab_affine,
                       spatial_size=(pet_shape[0], pet_shape[1], z1 - z0))
        out[..., z0:z1] = torch.as_tensor(res).to(out.device)
        del res
    return out
