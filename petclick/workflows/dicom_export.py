"""Exporting autoPET-layout cases (the phantom cohort) as DICOM PET/CT studies.

For each case `<root>/imagesTr/<case>_0000|_0001.nii.gz` -> `<out>/<case>/CT/*.dcm` and `PT/*.dcm`:
- the CT on a grid of its own, `ct_zoom` times finer along each axis (the same field of view; each
  PET-grid voxel becomes ct_zoom^3 CT voxels), so a reader must resample it onto the PET grid, as
  with a scanner's 512x512 ~1 mm CT next to its ~4 mm PET. With nearest-neighbour refinement, a
  trilinear resampling back at the PET voxel centres returns the original CT values exactly;
- the PET in Bq/mL with the body-weight SUV tags (petclick.io.dicom_suv): weight, injected dose,
  injection and series times and half-life drawn per case from the case id (deterministic) in
  clinical ranges (FDG 3-4 MBq/kg of F-18, 55-75 min uptake; PSMA 1.8-2.2 MBq/kg of Ga-68);
- one study per case (CT and PET share it and the frame of reference); PatientName = case id
  (its family name; petclick.io.dicom_study names a case so).
`<out>/studies.json` maps each case id to its StudyInstanceUID, series UIDs and SUV factor.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

import numpy as np

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.io.datalist import CASE_ID, find_cases
from petclick.io.dicom_export import StudyInfo, write_ct_series, write_pet_series
from petclick.io.dicom_suv import SuvParameters
from petclick.io.images import Volume, load_volume

log = logging.getLogger(__name__)
CT_ZOOM = 2
HALF_LIFE_S = {"fdg": 6586.2, "psma": 4062.6}            # F-18, Ga-68
AGENT = {"fdg": ("18F", "Fluorodeoxyglucose"), "psma": ("68Ga", "Ga-68 PSMA-11")}
DOSE_MBQ_PER_KG = {"fdg": (3.0, 4.0), "psma": (1.8, 2.2)}


def finer_grid(volume: Volume, zoom: int) -> Volume:
    """The volume on a grid `zoom` times finer per axis over the same field of view (nearest neighbour)."""
    zoom = int(zoom)
    if zoom < 1:
        raise ValueError(f"zoom must be >= 1, got {zoom}")
    array = volume.array
    for axis in range(3):
        array = np.repeat(array, zoom, axis=axis)
    lin = volume.affine[:3, :3]
    affine = np.eye(4)
    affine[:3, :3] = lin / zoom
    affine[:3, 3] = volume.affine[:3, 3] + lin @ np.full(3, (1.0 / zoom - 1.0) / 2.0)    # voxel edges kept
    return Volume(array, affine, volume.path)


def case_parameters(case_id: str) -> tuple[StudyInfo, SuvParameters, str]:
    """Study attributes, SUV parameters and tracer of a case, drawn deterministically from its id."""
    match = CASE_ID.match(case_id)
    tracer = match["tracer"].lower() if match else "fdg"
    patient = match["patient"] if match else case_id
    rng = np.random.default_rng(int(hashlib.sha256(case_id.encode()).hexdigest()[:12], 16))
    try:
        day = datetime.strptime(match["date"], "%d-%m-%Y") if match else datetime(2020, 1, 1)
    except ValueError:
        day = datetime(2020, 1, 1)
    injection = day + timedelta(hours=8, minutes=int(rng.integers(0, 240)), seconds=int(rng.integers(0, 60)))
    reference = injection + timedelta(minutes=float(rng.uniform(55, 75)))
    weight = round(float(rng.uniform(50, 110)), 1)
    dose = float(rng.uniform(*DOSE_MBQ_PER_KG[tracer])) * weight * 1e6
    params = SuvParameters(weight, dose, HALF_LIFE_S[tracer], injection, reference, "START")
    info = StudyInfo(case_id, patient[:64], f"{case_id}^", injection - timedelta(minutes=5),
                     sex="M" if tracer == "psma" else str(rng.choice(["F", "M"])), age_years=int(rng.integers(35, 85)))
    return info, params, tracer


def export_case(root: Path, case_id: str, out: Path, ct_zoom: int = CT_ZOOM, images: str = "imagesTr") -> dict:
    """One case as a DICOM study under `out/<case>/` (module docstring); returns its studies.json entry."""
    ct = load_volume(root / images / f"{case_id}_0000.nii.gz")
    pet = load_volume(root / images / f"{case_id}_0001.nii.gz")
    info, params, tracer = case_parameters(case_id)
    fine = finer_grid(ct, ct_zoom)
    write_ct_series(out / case_id / "CT", fine, info, params.reference - timedelta(minutes=2))
    nuclide, agent = AGENT[tracer]
    _, factor = write_pet_series(out / case_id / "PT", pet, info, params, radionuclide=nuclide, agent=agent)
    return {"study": info.uid("study"), "ct_series": info.uid("ct"), "pet_series": info.uid("pt"),
            "suv_factor": factor, "ct_shape": list(fine.array.shape), "pet_shape": list(pet.array.shape),
            "folder": case_id}


def export_cohort(root: str | Path, out: str | Path | None = None, cases: Sequence[str] | None = None,
                  ct_zoom: int = CT_ZOOM, images: str = "imagesTr") -> Path:
    """Every case (or `cases`) of an autoPET-layout folder as DICOM studies; returns studies.json."""
    root = Path(root)
    out = Path(out) if out is not None else root / "dicom"
    found = find_cases(root, images)
    chosen = list(cases) if cases is not None else found
    missing = sorted(set(chosen) - set(found))
    if missing:
        raise InputError(root / images, f"no case {missing[0]} here")
    entries = {}
    for case_id in chosen:
        entries[case_id] = export_case(root, case_id, out, ct_zoom, images)
        log.info("%s: DICOM study %s", case_id, entries[case_id]["study"])
    index = out / "studies.json"
    atomic_write_text(index, json.dumps({"ct_zoom": int(ct_zoom), "cases": entries}, indent=1) + "\n")
    return index
