"""The grand-challenge container job: discover /input, predict each job, write the .mha masks
(SimpleITK conversions: petclick.io.sitk).

Masks are written with the PET image's own origin, spacing and direction, so the output lies
on the PET grid bit for bit.

The container layout (autoPET IV, task 1):
    /input/images/ct/<uuid>.mha   /input/images/pet/<uuid>.mha   /input/lesion-clicks.json
    /output/images/tumor-lesion-segmentation/<uuid>.mha       (uuid = the CT file's stem)
Grand challenge gives each uploaded image its own uuid, so the CT and PET names usually differ:
with one CT and one PET they are paired whatever their names; with several, by equal names. The
output takes the CT's uuid, as the organisers' baseline container does.

Clicks are read under the lenient policy (petclick.io.clickpolicy): a challenge job must never
fail over its clicks. Bad entries are dropped one by one and the good ones used; a file that
cannot be read at all (missing, malformed JSON, over the size limit) means step 0. Every drop
goes to stderr and to `<output>/petclick-input-report.json` (per job: the clicks used, each
dropped entry with its reason, the file error if any, and the tracer decided for post-processing:
the learned classifier's with --tracer-model / $PETCLICK_TRACER_MODEL, else the MIP rule's).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks, read_click_file
from petclick.io.clickpolicy import BUDGET, ClickPolicy, apply_click_policy
from petclick.io.sitk import read_sitk, save_mha

log = logging.getLogger(__name__)

CT_DIR, PET_DIR = Path("images/ct"), Path("images/pet")
CLICKS_FILE = "lesion-clicks.json"
OUTPUT_DIR = Path("images/tumor-lesion-segmentation")
REPORT_FILE = "petclick-input-report.json"
DEFAULT_MODELS = "/opt/algorithm/models"
MODELS_ENV = "PETCLICK_MODELS"
TRACER_MODEL_ENV = "PETCLICK_TRACER_MODEL"


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


def read_job_clicks(job: GcCase, shape, policy: ClickPolicy | str = ClickPolicy.LENIENT) -> tuple[Clicks, dict]:
    """The job's clicks under `policy` (the container's lenient one by default) and its report entry
    (clicks used, drops, error). A file that cannot be read means step 0; what the policy refuses
    (outside the volume, over the budget, under strict or drop-outside) is an error."""
    drops: list = []
    error = None
    try:
        clicks = read_click_file(job.clicks, policy, drops) if job.clicks else Clicks()
    except InputError as exc:
        log.error("%s: predicting without clicks (step 0)", exc)
        clicks, error = Clicks(), str(exc)
    clicks = apply_click_policy(clicks, shape, job.clicks, policy, BUDGET, drops)
    report = {"uuid": job.uuid, "clicks_file": None if job.clicks is None else str(job.clicks),
              "n_tumor_clicks": len(clicks.tumor), "n_background_clicks": len(clicks.background),
              "dropped": [d.to_dict() for d in drops], "error": error}
    return clicks, report


def run_gc(input_dir: str | Path, output_dir: str | Path, runner, policy: ClickPolicy | str = ClickPolicy.LENIENT
           ) -> list[Path]:
    """Predict every grand-challenge job under `input_dir` into `output_dir`; returns the written masks.

    `runner` is a petclick.workflows.predict.Runner (ensemble, time budget, post-processing config). The
    click file holds this job's clicks (the good ones are used, see the module docstring; `policy`
    lenient unless the command line asks otherwise); its absence means step 0. The input report is
    written after every job. Each job is one step of an interactive session.
    """
    from petclick.inference.steps import official_clicks, run_steps
    from petclick.workflows.predict.inputs import load_prediction_case

    written, reports = [], []
    for job in discover_gc_inputs(input_dir):
        case = load_prediction_case(job.ct, job.pet)
        clicks, report = read_job_clicks(job, case.shape, policy)
        tracer = report["tracer"] = runner.case_tracer(None, case)
        reports.append(report)
        atomic_write_text(Path(output_dir) / REPORT_FILE, json.dumps({"jobs": reports}, indent=1) + "\n")
        log.info("%s: %d tumour and %d background click(s)", job.uuid, len(clicks.tumor), len(clicks.background))
        session = runner.case_session(case, clicks, [None], tracer, job.clicks)
        (_, pred), = run_steps(session, [None], official_clicks(clicks))
        out = Path(output_dir) / OUTPUT_DIR / f"{job.uuid}.mha"
        written.append(save_mha(out, pred.mask, reference=read_sitk(job.pet)))
        log.info("wrote %s (%d lesion voxel(s))", out, int(pred.mask.sum()))
    return written
