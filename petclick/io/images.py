"""NIfTI volumes and whole cases (CT, PET, label, organs) with geometry and value checks.

Arrays are returned exactly as nibabel orders them (i, j, k), the index order click
coordinates use; the affine maps (i, j, k, 1) to world millimetres.

Image values, the same in every command (`checked_pet`, `checked_ct`; load_case applies them):
- PET: NaN, infinite and negative SUV are set to 0 with a warning counting them; a PET with no
  positive finite voxel (all zero, all NaN) is refused, naming the file.
- CT: NaN and infinite HU are set to -1000 (air) with a warning counting them; a CT with no finite
  voxel is refused, naming the file.
- labels must hold only 0 and 1; files must be readable and 3D (4D with one volume is taken as 3D).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from petclick.core.atomic import atomic_path
from petclick.core.errors import InputError

log = logging.getLogger(__name__)

AFFINE_ATOL_MM = 1e-3
AIR_HU = -1000.0


@dataclass
class Volume:
    """One image: its voxel array, its affine and the file it came from."""

    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None

    @property
    def spacing(self) -> tuple[float, float, float]:
        return spacing_from_affine(self.affine)


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along i, j, k (column norms of the affine's 3x3 part)."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def voxel_volume_ml(spacing_or_affine) -> float:
    """Volume of one voxel in mL: sx*sy*sz/1000 from the header spacing."""
    arr = np.asarray(spacing_or_affine, dtype=float)
    spacing = spacing_from_affine(arr) if arr.shape == (4, 4) else arr
    return float(np.prod(spacing) / 1000.0)


def load_volume(path: str | Path, dtype=np.float32) -> Volume:
    """Load a 3D NIfTI; a missing, unreadable or non-3D file raises InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(path, f"cannot read as NIfTI ({exc})") from exc
    if not (len(img.shape) == 3 or (len(img.shape) == 4 and img.shape[3] == 1)):
        raise InputError(path, f"expected a 3D volume, got shape {tuple(img.shape)}")
    try:
        data = np.asarray(img.dataobj)
    except Exception as exc:  # truncated or corrupt data: EOFError, zlib.error, OSError, ...
        raise InputError(path, f"cannot read the image data, the file is truncated or corrupt ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"expected a 3D volume, got shape {data.shape}")
    return Volume(np.asarray(data, dtype=dtype), np.asarray(img.affine, dtype=np.float64), path)


def save_volume(path: str | Path, array: np.ndarray, affine: np.ndarray, dtype=None) -> Path:
    """Write a 3D array as NIfTI (gzip when the name ends in .gz) with qform and sform set,
    atomically: a complete file under `path` or none."""
    path = Path(path)
    data = np.asarray(array if dtype is None else array.astype(dtype))
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def pet_value_counts(pet: Volume) -> tuple[int, int]:
    """(NaN/infinite, negative) voxel counts of a PET; InputError naming the file when no voxel
    would hold a positive finite SUV (all zero, all NaN, all negative)."""
    arr = pet.array
    n_bad = int(np.count_nonzero(~np.isfinite(arr)))
    n_neg = int(np.count_nonzero(arr < 0))
    if not np.any(np.isfinite(arr) & (arr > 0)):
        repaired = f" ({n_bad} NaN/infinite and {n_neg} negative voxel(s) would be set to 0)" if n_bad or n_neg else ""
        raise InputError(pet.path, f"PET holds no uptake: none of its {arr.size} voxels has a positive SUV{repaired}")
    return n_bad, n_neg


def ct_value_count(ct: Volume) -> int:
    """NaN/infinite voxel count of a CT; InputError naming the file when no voxel is finite."""
    n_bad = int(np.count_nonzero(~np.isfinite(ct.array)))
    if n_bad and n_bad == ct.array.size:
        raise InputError(ct.path, f"CT holds no finite value: all {n_bad} voxels are NaN or infinite")
    return n_bad


def checked_pet(pet: Volume) -> Volume:
    """PET with NaN, infinite and negative SUV set to 0 (a warning counts them); InputError naming
    the file when no voxel holds a positive finite SUV."""
    n_bad, n_neg = pet_value_counts(pet)
    if not (n_bad or n_neg):
        return pet
    log.warning("%s: %d NaN/infinite and %d negative SUV voxel(s) set to 0", pet.path, n_bad, n_neg)
    arr = pet.array
    return Volume(np.where(~np.isfinite(arr) | (arr < 0), np.float32(0), arr).astype(np.float32), pet.affine, pet.path)


def checked_ct(ct: Volume) -> Volume:
    """CT with NaN and infinite HU set to -1000 (air; a warning counts them); InputError naming the
    file when no voxel is finite."""
    n_bad = ct_value_count(ct)
    if not n_bad:
        return ct
    log.warning("%s: %d NaN/infinite CT voxel(s) set to %g HU (air)", ct.path, n_bad, AIR_HU)
    return Volume(np.where(np.isfinite(ct.array), ct.array, np.float32(AIR_HU)).astype(np.float32), ct.affine, ct.path)


def check_same_grid(reference: Volume, other: Volume, what: str = "image") -> None:
    """Raise InputError when `other` is not on the same voxel grid (shape and affine) as `reference`."""
    if reference.array.shape != other.array.shape:
        raise InputError(
            other.path,
            f"{what} shape {other.array.shape} differs from {reference.path} shape {reference.array.shape}",
        )
    if not np.allclose(reference.affine, other.affine, atol=AFFINE_ATOL_MM):
        raise InputError(other.path, f"{what} affine differs from the affine of {reference.path}")


def check_binary(volume: Volume, what: str = "label") -> None:
    """Raise InputError unless every voxel of the mask is 0 or 1."""
    arr = volume.array
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        extra = np.unique(arr[bad])
        shown = ", ".join(f"{v:g}" for v in extra[:5])
        raise InputError(volume.path, f"{what} must be binary (0/1), found values {shown}")


@dataclass
class CaseVolumes:
    """The volumes of one case on a common grid (the PET's)."""

    ct: Volume
    pet: Volume
    label: Volume | None = None
    organs: Volume | None = None

    @property
    def affine(self) -> np.ndarray:
        return self.pet.affine

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pet.array.shape)


def load_case(ct: str | Path, pet: str | Path, label: str | Path | None = None,
              organs: str | Path | None = None) -> CaseVolumes:
    """Load CT, PET and optional label/organ map, checking they share the PET's grid and the label is
    binary; PET and CT values are checked and repaired as the module docstring says."""
    pet_vol = checked_pet(load_volume(pet))
    ct_vol = checked_ct(load_volume(ct))
    check_same_grid(pet_vol, ct_vol, "CT")
    label_vol = organs_vol = None
    if label is not None:
        label_vol = load_volume(label, dtype=np.float32)
        check_same_grid(pet_vol, label_vol, "label")
        check_binary(label_vol)
        label_vol.array = label_vol.array.astype(np.uint8)
    if organs is not None:
        organs_vol = load_volume(organs)
        check_same_grid(pet_vol, organs_vol, "organ map")
        organs_vol.array = organs_vol.array.astype(np.uint8)
    return CaseVolumes(ct_vol, pet_vol, label_vol, organs_vol)
