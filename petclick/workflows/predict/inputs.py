"""Reading one prediction case robustly: the bad inputs a user or a challenge can send.

- Images: petclick.io.casefiles (CT resampled onto the PET grid, NaN/negative SUV set to 0).
- Clicks outside the volume (or with negative indices): petclick.io.clickpolicy decides (an error
  naming the file and the click by default; `drop-outside`: dropped with a warning naming each).
- An empty click file (no bytes, `{}`, no points): no clicks, i.e. step 0.
- Missing CT, PET or click file: InputError naming the file.
NIfTI (.nii/.nii.gz) and SimpleITK formats (.mha, .mhd, .nrrd) are read, both into petclick's
(i, j, k) arrays with a RAS affine.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from petclick.core.errors import InputError
from petclick.io.clickfile import KINDS, Clicks, clicks_from_json
from petclick.io.clickpolicy import ClickPolicy, apply_click_policy
from petclick.io.casefiles import clean_suv, load_prediction_case, read_image, resample_to, same_grid

__all__ = ["clean_suv", "load_prediction_case", "read_image", "read_prediction_clicks", "resample_to", "same_grid"]

log = logging.getLogger(__name__)


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


def read_prediction_clicks(path: str | Path | None, shape, policy: ClickPolicy | str | None = ClickPolicy.STRICT,
                           round_coordinates: bool = False) -> Clicks:
    """Clicks of a plain or grand-challenge file under the click `policy` (petclick.io.clickpolicy:
    outside the volume an error by default, dropped with a warning listing each under
    `drop-outside`); empty file = no clicks; with `round_coordinates`, fractional indices are
    rounded (else an error). `policy` None: parsed only (negative indices kept), no policy applied."""
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
    clicks = clicks_from_json(data, path, allow_negative=True)
    return clicks if policy is None else apply_click_policy(clicks, shape, path, policy)
