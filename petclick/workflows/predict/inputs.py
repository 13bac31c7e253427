"""Reading one prediction case robustly: the bad inputs a user or a challenge can send.

- CT and PET on different grids: the CT is resampled onto the PET grid (trilinear, air outside),
  with a warning: the network's channels must share the PET's voxels.
- NaN, infinite or negative SUV: set to 0, with a warning that counts them.
- Clicks outside the volume (or with negative indices): dropped, with a warning naming each.
- An empty click file (no bytes, `{}`, no points): no clicks, i.e. step 0.
- Missing CT, PET or click file: InputError naming the file.
NIfTI (.nii/.nii.gz) and SimpleITK formats (.mha, .mhd, .nrrd) are read, both into petclick's
(i, j, k) arrays with a RAS affine.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from scipy import ndimage

from petclick.core.errors import InputError
from petclick.io.clickfile import KINDS, Clicks, clicks_from_json
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


def _outside(point, shape) -> bool:
    return not (isinstance(point, (list, tuple)) and len(point) == 3
                and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in point)
                and all(0 <= c < s for c, s in zip(point, shape)))


def _split_outside(data: dict, shape) -> tuple[dict, list[str]]:
    """The decoded click JSON without the numeric points outside the volume, and a description of each."""
    dropped: list[str] = []

    def numeric3(p) -> bool:
        return (isinstance(p, (list, tuple)) and len(p) == 3
                and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p))

    if isinstance(data.get("points"), list):
        kept = []
        for n, item in enumerate(data["points"]):
            p = item.get("point") if isinstance(item, dict) else None
            if numeric3(p) and _outside(p, shape):
                dropped.append(f"points[{n}] {item.get('name')} {list(p)}")
            else:
                kept.append(item)
        return {**data, "points": kept}, dropped
    out = dict(data)
    for kind in KINDS:
        if isinstance(data.get(kind), list):
            kept = []
            for n, p in enumerate(data[kind]):
                if numeric3(p) and _outside(p, shape):
                    dropped.append(f"{kind}[{n}] {list(p)}")
                else:
                    kept.append(p)
            out[kind] = kept
    return out, dropped


def _round_points(data: dict, path: Path) -> dict:
    """Integer-valued copies of numeric click coordinates (a warning when any was fractional)."""
    changed = []

    def fix(p):
        if isinstance(p, list) and all(isinstance(c, float) for c in p if not isinstance(c, bool)) and \
                any(isinstance(c, float) and not float(c).is_integer() for c in p):
            changed.append(list(p))
            return [int(round(c)) for c in p]
        return p

    if isinstance(data.get("points"), list):
        data = {**data, "points": [{**it, "point": fix(it.get("point"))} if isinstance(it, dict) else it
                                   for it in data["points"]]}
    else:
        data = {k: ([fix(p) for p in v] if k in KINDS and isinstance(v, list) else v) for k, v in data.items()}
    if changed:
        log.warning("%s: fractional click coordinates rounded to voxel indices: %s", path, changed)
    return data


def read_clicks_lenient(path: str | Path | None, shape, round_coordinates: bool = False) -> Clicks:
    """Clicks of a plain or grand-challenge file; out-of-volume clicks dropped with a warning, empty
    file = no clicks; with `round_coordinates`, fractional indices are rounded (else an error)."""
    if path is None:
        return Clicks()
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "click file not found")
    text = path.read_text(errors="replace").strip()
    if not text:
        log.warning("%s: empty click file: predicting without clicks (step 0)", path)
        return Clicks()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"malformed JSON ({exc})") from exc
    if data in ({}, [], None):
        return Clicks()
    if not isinstance(data, dict):
        raise InputError(path, "click file must hold a JSON object")
    if round_coordinates:
        data = _round_points(data, path)
    data, dropped = _split_outside(data, shape)
    if dropped:
        log.warning("%s: %d click(s) outside the PET volume of shape %s dropped: %s", path, len(dropped),
                    tuple(shape), "; ".join(dropped))
    return clicks_from_json(data, path)
