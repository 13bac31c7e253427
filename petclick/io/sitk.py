"""SimpleITK images (.mha and the rest) converted to and from petclick's conventions.

petclick holds arrays in nibabel order (i, j, k) with a voxel -> RAS affine; SimpleITK returns
arrays in (z, y, x) = (k, j, i) order with an LPS origin, spacing and direction. Here:
- array: `sitk.GetArrayFromImage(img).transpose(2, 1, 0)` is the (i, j, k) array, so the
  challenge's click `points` (ITK index order i, j, k) index it directly;
- affine: LPS(i, j, k) = origin + direction @ diag(spacing) @ (i, j, k); RAS = diag(-1, -1, 1) @ LPS.
Masks written with a reference image's origin, spacing and direction (CopyInformation) lie on its
grid bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from petclick.core.atomic import atomic_path
from petclick.core.errors import InputError
from petclick.io.images import Volume, load_volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class _LazySimpleITK:
    """SimpleITK, imported on first use: the rest of the CLI must work where it is not installed."""

    def __getattr__(self, name: str):
        import SimpleITK

        return getattr(SimpleITK, name)


sitk = _LazySimpleITK()


def affine_from_sitk(img: sitk.Image) -> np.ndarray:
    """The voxel (i, j, k) -> RAS mm affine of a 3D SimpleITK image."""
    direction = np.asarray(img.GetDirection(), float).reshape(3, 3)
    lin = direction @ np.diag(img.GetSpacing())
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ lin
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(img.GetOrigin(), float)
    return affine


def sitk_geometry_from_affine(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """(origin, spacing, direction) in SimpleITK's LPS terms for a voxel -> RAS affine."""
    affine = np.asarray(affine, float)
    lin = LPS_TO_RAS @ affine[:3, :3]
    spacing = np.linalg.norm(lin, axis=0)
    direction = lin / spacing
    origin = LPS_TO_RAS @ affine[:3, 3]
    return tuple(origin.tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


def array_from_sitk(img: sitk.Image, dtype=np.float32) -> np.ndarray:
    """(i, j, k)-ordered array of a SimpleITK image."""
    return np.ascontiguousarray(sitk.GetArrayFromImage(img).transpose(2, 1, 0)).astype(dtype, copy=False)


def sitk_from_array(array: np.ndarray, reference: sitk.Image | None = None, affine: np.ndarray | None = None) -> sitk.Image:
    """SimpleITK image of an (i, j, k) array with the reference's geometry (or the affine's)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    if reference is not None:
        if tuple(reference.GetSize()) != tuple(array.shape):
            raise ValueError(f"array shape {array.shape} differs from the reference size {reference.GetSize()}")
        img.CopyInformation(reference)
    elif affine is not None:
        origin, spacing, direction = sitk_geometry_from_affine(affine)
        img.SetOrigin(origin)
        img.SetSpacing(spacing)
        img.SetDirection(direction)
    return img


def read_sitk(path: str | Path) -> sitk.Image:
    """Read a 3D image with SimpleITK; missing, unreadable or non-3D files raise InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(path, f"cannot read the image ({str(exc).strip().splitlines()[-1]})") from exc
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        img = img[:, :, :, 0]
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"expected a 3D scalar image, got size {img.GetSize()} "
                               f"with {img.GetNumberOfComponentsPerPixel()} component(s)")
    return img


def load_mha(path: str | Path, dtype=np.float32) -> Volume:
    """A .mha (or any SimpleITK-readable) image as a petclick Volume: (i, j, k) array and RAS affine."""
    img = read_sitk(path)
    return Volume(array_from_sitk(img, dtype), affine_from_sitk(img), Path(path))


def save_mha(path: str | Path, array: np.ndarray, reference: sitk.Image | None = None,
             affine: np.ndarray | None = None, compress: bool = True) -> Path:
    """Write an (i, j, k) array as .mha with the reference image's geometry (or the affine's)."""
    path = Path(path)
    if path.suffix.lower() == ".mhd":
        raise ValueError(f"{path}: write .mha (one file); a .mhd header and its raw file cannot be renamed as one")
    image = sitk_from_array(array, reference, affine)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
    return path


def read_image(path: str | Path) -> Volume:
    """A 3D image as a Volume: NIfTI (.nii, .nii.gz) through nibabel, anything else through SimpleITK."""
    path = Path(path)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return load_volume(path)
    return load_mha(path)
