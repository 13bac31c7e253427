"""Grand-challenge I/O: .mha images through SimpleITK, converted to and from petclick's conventions.

petclick holds arrays in nibabel order (i, j, k) with a voxel -> RAS affine; SimpleITK returns
arrays in (z, y, x) = (k, j, i) order with an LPS origin, spacing and direction. Here:
- array: `sitk.GetArrayFromImage(img).transpose(2, 1, 0)` is the (i, j, k) array, so the
  challenge's click `points` (ITK index order i, j, k) index it directly;
- affine: LPS(i, j, k) = origin + direction @ diag(spacing) @ (i, j, k); RAS = diag(-1, -1, 1) @ LPS.
Masks are written with the PET image's own origin, spacing and direction (CopyInformation), so the
output lies on the PET grid bit for bit.

The container layout (autoPET IV, task 1):
    /input/images/ct/<uuid>.mha   /input/images/pet/<uuid>.mha   /input/lesion-clicks.json
    /output/images/tumor-lesion-segmentation/<uuid>.mha       (uuid = the CT file's stem)
Grand challenge gives each uploaded image its own uuid, so the CT and PET names usually differ:
with one CT and one PET they are paired whatever their names; with several, by equal names. The
output takes the CT's uuid, as the organisers' baseline container does. A missing, empty or
malformed click file means step 0 (logged): a challenge job must never fail over its clicks.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from petclick.errors import InputError
from petclick.io.clickfile import Clicks
from petclick.io.images import Volume

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
CT_DIR, PET_DIR = Path("images/ct"), Path("images/pet")
CLICKS_FILE = "lesion-clicks.json"
OUTPUT_DIR = Path("images/tumor-lesion-segmentation")
DEFAULT_MODELS = "/opt/algorithm/models"


class _LazySimpleITK:
    """SimpleITK, imported on first use: the rest of the CLI must work where it is not installed."""

    def __getattr__(self, name: str):
        import SimpleITK

        return getattr(SimpleITK, name)


sitk = _LazySimpleITK()
MODELS_ENV = "PETCLICK_MODELS"


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
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk_from_array(array, reference, affine), str(path), useCompression=compress)
    return path


@dataclass
class GcCase:
    """One grand-challenge job: its uuid, the CT and PET files and the click file (None when absent)."""

    uuid: str
    ct: Path
    pet: Path
    clicks: Path | None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".mha", ".mhd", ".nii.gz", ".nii", ".tif", ".tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def discover_gc_inputs(input_dir: str | Path) -> list[GcCase]:
    """The jobs under a grand-challenge /input folder: the only CT and PET when there is one of each,
    else every PET with the CT of the same stem; uuid = the CT's stem. Missing folders or files
    raise InputError."""
    root = Path(input_dir)
    if not root.is_dir():
        raise InputError(root, "input folder not found")
    images = {}
    for kind, sub in (("ct", CT_DIR), ("pet", PET_DIR)):
        folder = root / sub
        files = sorted(p for p in folder.glob("*") if p.is_file() and _stem(p) != p.name) if folder.is_dir() else []
        if not files:
            raise InputError(folder, f"no {kind.upper()} image found (expected {sub}/<uuid>.mha)")
        images[kind] = files
    cts = {_stem(p): p for p in images["ct"]}
    clicks = root / CLICKS_FILE
    cases = []
    single = len(images["ct"]) == 1 and len(images["pet"]) == 1
    for pet in images["pet"]:
        ct = images["ct"][0] if single else cts.get(_stem(pet))
        if ct is None:
            raise InputError(pet, f"{len(images['ct'])} CT images and no CT with the same name in {root / CT_DIR}")
        cases.append(GcCase(_stem(ct), ct, pet, clicks if clicks.is_file() else None))
    if cases and cases[0].clicks is None:
        log.warning("%s not found: predicting without clicks (step 0)", clicks)
    return cases


def default_models() -> str:
    """The models folder: $PETCLICK_MODELS, else the container's /opt/algorithm/models."""
    return os.environ.get(MODELS_ENV, DEFAULT_MODELS)


def run_gc(input_dir: str | Path, output_dir: str | Path, runner) -> list[Path]:
    """Predict every grand-challenge job under `input_dir` into `output_dir`; returns the written masks.

    `runner` is a petclick.predict.Runner (ensemble, time budget, post-processing config). The
    click file holds this job's clicks (all of them are used); its absence means step 0.
    """
    from petclick.postprocess import postprocess, resolve_tracer
    from petclick.predict.inputs import load_prediction_case, read_clicks_lenient

    written = []
    for job in discover_gc_inputs(input_dir):
        case = load_prediction_case(job.ct, job.pet)
        try:
            clicks = read_clicks_lenient(job.clicks, case.shape, round_coordinates=True)
        except InputError as exc:
            log.error("%s: predicting without clicks (step 0)", exc)
            clicks = Clicks()
        log.info("%s: %d tumour and %d background click(s)", job.uuid, len(clicks.tumor), len(clicks.background))
        prob = runner.probability(case, clicks)
        if prob.shape != case.shape:
            raise InputError(job.pet, f"prediction shape {prob.shape} differs from the PET grid {case.shape}")
        mask = postprocess(prob, case, clicks, resolve_tracer(None, case), runner.settings.postprocess)
        out = Path(output_dir) / OUTPUT_DIR / f"{job.uuid}.mha"
        written.append(save_mha(out, mask.astype(np.uint8), reference=read_sitk(job.pet)))
        log.info("wrote %s (%d lesion voxel(s))", out, int(mask.sum()))
    return written
