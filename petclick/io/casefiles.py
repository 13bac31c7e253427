"""Reading one case for prediction: CT and PET onto the PET grid, with the repairs a user's or a
challenge's files need (every prediction entry point and the interactive session read cases so).

- CT and PET on different grids: the CT is resampled onto the PET grid (trilinear, air outside),
  with a warning: the network's channels must share the PET's voxels.
- NaN, infinite or negative SUV: set to 0, with a warning that counts them.
- Missing or unreadable CT or PET: InputError naming the file.
NIfTI (.nii/.nii.gz) and SimpleITK formats (.mha, .mhd, .nrrd) are read, both into petclick's
(i, j, k) arrays with a RAS affine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy import ndimage

from petclick.io.images import AFFINE_ATOL_MM, CaseVolumes, Volume, load_volume

log = logging.getLogger(__name__)

AIR_HU = -1000.0


def read_image(path: str | Path) -> Volume:
    """A 3D image as a Volume; NIfTI through nibabel, anything else through SimpleITK."""
    path = Path(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return load_volume(path)
    from petclick.io.sitk import load_mha
    return load_mha(path)


def same_grid(a: Volume, b: Volume) -> bool:
    return a.array.shape == b.array.shape and np.allclose(a.affine, b.affine, atol=AFFINE_ATOL_MM)


def resample_to(volume: Volume, reference: Volume, fill: float = AIR_HU, order: int = 1) -> Volume:
    """`volume` resampled onto the reference's voxel grid through both affines (world positions kept)."""
    matrix = np.linalg.inv(volume.affine) @ reference.affine      # reference voxel -> volume voxel
    matrix = np.round(matrix, 6)   # float noise would push edge voxels a hair outside the CT (-> air)
    out = ndimage.affine_transform(volume.array.astype(np.float32), matrix, output_shape=reference.array.shape,
                                   order=order, mode="constant", cval=fill)
    return Volume(out.astype(np.float32), reference.affine.copy(), volume.path)


def clean_suv(pet: Volume) -> Volume:
    """Set NaN, infinite and negative SUV to 0 (with a warning saying how many voxels)."""
    arr = pet.array
    bad = ~np.isfinite(arr)
    neg = arr < 0
    n_bad, n_neg = int(np.count_nonzero(bad)), int(np.count_nonzero(neg))
    if n_bad or n_neg:
        log.warning("%s: %d NaN/infinite and %d negative SUV voxel(s) set to 0", pet.path, n_bad, n_neg)
        arr = np.where(bad | neg, np.float32(0), arr).astype(np.float32)
    return Volume(arr, pet.affine, pet.path)


def load_prediction_case(ct: str | Path, pet: str | Path) -> CaseVolumes:
    """CT and PET of one case on the PET grid, with the bad-input repairs of the module docstring."""
    pet_vol = clean_suv(read_image(pet))
    ct_vol = read_image(ct)
    if not same_grid(pet_vol, ct_vol):
        log.warning("%s: CT grid %s differs from the PET grid %s (%s): resampling the CT onto the PET grid",
                    ct, ct_vol.array.shape, pet_vol.array.shape, Path(pet).name)
        ct_vol = resample_to(ct_vol, pet_vol)
    return CaseVolumes(ct_vol, pet_vol)
