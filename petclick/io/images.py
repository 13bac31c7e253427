"""NIfTI volumes and whole cases (CT, PET, label, organs) with geometry checks.

Arrays are returned exactly as nibabel orders them (i, j, k), the index order click
coordinates use; the affine maps (i, j, k, 1) to world millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from petclick.core.errors import InputError

AFFINE_ATOL_MM = 1e-3


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
        data = np.asarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(path, f"cannot read as NIfTI ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"expected a 3D volume, got shape {data.shape}")
    return Volume(np.asarray(data, dtype=dtype), np.asarray(img.affine, dtype=np.float64), path)


def save_volume(path: str | Path, array: np.ndarray, affine: np.ndarray, dtype=None) -> Path:
    """Write a 3D array as NIfTI (gzip when the name ends in .gz) with qform and sform set."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.asarray(array if dtype is None else array.astype(dtype))
    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


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
    """Load CT, PET and optional label/organ map, checking they share the PET's grid and the label is binary."""
    pet_vol = load_volume(pet)
    ct_vol = load_volume(ct)
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
