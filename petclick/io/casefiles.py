"""Reading one case for prediction: CT and PET on the PET grid, through petclick.io's checks (every
prediction entry point and the interactive session read cases so).

- CT and PET on different grids: the CT is resampled onto the PET grid (trilinear, air outside),
  with a warning: the network's channels must share the PET's voxels.
- PET and CT values (NaN, negative or all-zero PET, NaN or all-NaN CT): as in every command,
  petclick.io.images.checked_pet / checked_ct (repaired with a warning, or refused naming the file).
NIfTI (.nii/.nii.gz) and SimpleITK formats (.mha, .mhd, .nrrd) are read, both into petclick's
(i, j, k) arrays with a RAS affine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy import ndimage

from petclick.io.images import AFFINE_ATOL_MM, AIR_HU, CaseVolumes, Volume, checked_ct, checked_pet
from petclick.io.sitk import read_image

log = logging.getLogger(__name__)

__all__ = ["AIR_HU", "load_prediction_case", "read_image", "resample_to", "same_grid"]


def same_grid(a: Volume, b: Volume) -> bool:
    return a.array.shape == b.array.shape and np.allclose(a.affine, b.affine, atol=AFFINE_ATOL_MM)


def resample_to(volume: Volume, reference: Volume, fill: float = AIR_HU, order: int = 1) -> Volume:
    """`volume` resampled onto the reference's voxel grid through both affines (world positions kept).

    Cost (a 512x512x2000 CT onto a 400x400x963 PET is 154 M interpolations): axis-aligned grids take
    scipy's zoom-and-shift path (half the time of the general matrix), and an array with i fastest in
    memory (nibabel's, DICOM's) is resampled as its (k, j, i) transpose, so memory is read in order
    and nothing is copied."""
    matrix = np.linalg.inv(volume.affine) @ reference.affine      # reference voxel -> volume voxel
    matrix = np.round(matrix, 6)   # float noise would push edge voxels a hair outside the CT (-> air)
    source, shape = volume.array.astype(np.float32, copy=False), tuple(reference.array.shape)
    transposed = source.flags.f_contiguous and not source.flags.c_contiguous
    if transposed:                                               # work on the (k, j, i) view
        flip = np.eye(4)[[2, 1, 0, 3]]
        matrix, source, shape = flip @ matrix @ flip, source.T, shape[::-1]
    linear, offset = matrix[:3, :3], matrix[:3, 3]
    if np.count_nonzero(linear - np.diag(np.diag(linear))) == 0:
        linear = np.diag(linear)                                  # scipy's zoom-and-shift path
    out = ndimage.affine_transform(source, linear, offset=offset, output_shape=shape, order=order, mode="constant",
                                   cval=fill)
    return Volume(out.T if transposed else out, reference.affine.copy(), volume.path)


def load_prediction_case(ct: str | Path, pet: str | Path) -> CaseVolumes:
    """CT and PET of one case on the PET grid, with the checks and repairs of the module docstring."""
    pet_vol = checked_pet(read_image(pet))
    ct_vol = checked_ct(read_image(ct))
    if not same_grid(pet_vol, ct_vol):
        log.warning("%s: CT grid %s differs from the PET grid %s (%s): resampling the CT onto the PET grid",
                    ct, ct_vol.array.shape, pet_vol.array.shape, Path(pet).name)
        ct_vol = resample_to(ct_vol, pet_vol)
    return CaseVolumes(ct_vol, pet_vol)
