"""The grand-challenge container job: discover /input, predict each job, write the .mha masks
(SimpleITK conversions: petclick.io.sitk).

Masks are written with the PET image's own origin, spacing and direction, so the output lies
on the PET grid bit for bit.

The container layout (autoPET IV, task 1):
    /input/images/ct/<uuid>.mha   /input/images/pet/<uuid>.mha   /input/lesion-clicks.json
    /output/images/tumor-lesion-segmentation/<uuid>.mha       (uuid = the CT file's stem)
Grand challenge gives each uploaded image its own uuid, so the CT and PET names usually differ:
with one CT and one PET they are paired whatever their names; with several, by equal names. The
output takes the CT's uuid, as the organisers' baseline container does. A missing, empty or
malformed click file means step 0 (logged); clicks outside the volume follow the click policy of
every command (petclick.io.clickpolicy: an error by default, `--drop-outside` drops them).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks
from petclick.io.sitk import read_sitk, save_mha

log = logging.getLogger(__name__)

CT_DIR, PET_DIR = Path("images/ct"), Path("images/pet")
CLICKS_FILE = "lesion-clicks.json"
OUTPUT_DIR = Path("images/tumor-lesion-segmentation")
DEFAULT_MODELS = "/opt/algorithm/models"
MODELS_ENV = "PETCLICK_MODELS"


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

    `runner` is a petclick.workflows.predict.Runner (ensemble, time budget, post-processing, click
    policy). The click file holds this job's clicks (all of them are used); its absence or a
    malformed file means step 0 (logged). Clicks outside the volume and over the budget go through
    the runner's click policy like every command's (strict: an error naming the file and the click).
    Each job is one step of an interactive session.
    """
    from petclick.inference.steps import official_clicks, run_steps
    from petclick.io.clickpolicy import apply_click_policy
    from petclick.postprocess import resolve_tracer
    from petclick.workflows.predict.inputs import load_prediction_case, read_prediction_clicks

    written = []
    for job in discover_gc_inputs(input_dir):
        case = load_prediction_case(job.ct, job.pet)
        try:
            clicks = read_prediction_clicks(job.clicks, case.shape, policy=None, round_coordinates=True)
        except InputError as exc:
            log.error("%s: predicting without clicks (step 0)", exc)
            clicks = Clicks()
        clicks = apply_click_policy(clicks, case.shape, job.clicks or CLICKS_FILE, runner.settings.click_policy)
        log.info("%s: %d tumour and %d background click(s)", job.uuid, len(clicks.tumor), len(clicks.background))
        session = runner.case_session(case, clicks, [None], resolve_tracer(None, case), job.clicks)
        (_, pred), = run_steps(session, [None], official_clicks(clicks))
        out = Path(output_dir) / OUTPUT_DIR / f"{job.uuid}.mha"
        written.append(save_mha(out, pred.mask, reference=read_sitk(job.pet)))
        log.info("wrote %s (%d lesion voxel(s))", out, int(pred.mask.sum()))
    return written
