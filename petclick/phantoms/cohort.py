"""A phantom cohort on disk: patients (some with two studies), negatives, centres, files, datalist.

Layout (docs/data.md, the autoPET layout): imagesTr/<case>_0000.nii.gz (CT, HU, int16),
imagesTr/<case>_0001.nii.gz (PET, SUV, float32), labelsTr/<case>.nii.gz, labelsTr_organs/<case>.nii.gz,
clicks/<case>_clicks.json, meta/<case>.json, phantoms.json (the generation request) and datalist.json
(5 folds grouped by patient, whole patients held out in `testing`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.io.clickfile import write_clicks
from petclick.io.datalist import build_datalist, find_cases, write_datalist
from petclick.io.images import save_volume
from petclick.phantoms.case import PhantomCase, check_geometry, generate_case
from petclick.phantoms.physics import CENTRES
from petclick.phantoms.uptake import TRACERS

log = logging.getLogger(__name__)
TRACER_CHOICES = TRACERS + ("mixed",)
SECOND_STUDY_P = 0.3
TEST_FRACTION = 0.2
NUM_FOLDS = 5


@dataclass(frozen=True)
class PlannedCase:
    case_id: str
    patient: str
    tracer: str
    negative: bool
    centre: int
    seed: int


def plan_cohort(cases: int, seed: int, tracer: str = "mixed", negatives: float = 0.4,
                min_test_cases: int | None = None) -> tuple[list[PlannedCase], list[str]]:
    """Case ids, tracers, negatives, centres and seeds of a cohort, plus the case ids held out for testing.

    Testing holds whole patients: about 20% of them at random, or with `min_test_cases` the fewest
    patients holding at least that many cases, drawn alternately from each tracer's patients and
    with at least one case without lesions (see `_test_patients`)."""
    if cases < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    if not 0.0 <= negatives <= 1.0:
        raise ValueError(f"negatives must be a fraction in [0, 1], got {negatives}")
    if tracer not in TRACER_CHOICES:
        raise ValueError(f"tracer must be one of {TRACER_CHOICES}, got {tracer!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 20250]))
    studies: list[int] = []          # studies per patient
    while sum(studies) < cases:
        two = cases - sum(studies) >= 2 and rng.uniform() < SECOND_STUDY_P
        studies.append(2 if two else 1)
    first_tracer = int(rng.integers(2))
    centre_order = rng.permutation(len(CENTRES))   # patients cycle over the centres: every centre appears
    negative_set = set(rng.permutation(cases)[: int(round(negatives * cases))].tolist())
    planned, used_ids = [], set()
    n = 0
    for p, count in enumerate(studies):
        t = TRACERS[(p + first_tracer) % 2] if tracer == "mixed" else tracer
        patient = f"{int(rng.integers(16 ** 10)):010x}"
        centre = int(centre_order[p % len(CENTRES)])
        year, month, day = int(rng.integers(2002, 2021)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
        for s in range(count):
            m = month - 1 + s * int(rng.integers(3, 19))
            date = f"{day:02d}-{m % 12 + 1:02d}-{year + m // 12}"
            case_id = f"{t}_{patient}_{date}"
            assert case_id not in used_ids
            used_ids.add(case_id)
            case_seed = int(np.random.SeedSequence([int(seed), n]).generate_state(1)[0])
            planned.append(PlannedCase(case_id, patient, t, n in negative_set, centre, case_seed))
            n += 1
    patients = sorted({c.patient for c in planned})
    if min_test_cases is not None:
        test_patients = _test_patients(planned, int(min_test_cases), rng)
    else:
        n_test = int(round(TEST_FRACTION * len(patients))) if len(patients) >= 2 else 0
        n_test = min(max(n_test, 1 if len(patients) >= 3 else 0), len(patients) - 1)
        test_patients = set(rng.permutation(patients)[:n_test].tolist()) if n_test else set()
    test_cases = [c.case_id for c in planned if c.patient in test_patients]
    return planned, test_cases


def _test_patients(planned: list[PlannedCase], min_cases: int, rng: np.random.Generator) -> set[str]:
    """Whole patients for testing: taken alternately from each tracer's shuffled patients until they
    hold >= `min_cases` cases; if none of their cases is negative, the last one taken is swapped for the
    next patient (same tracer first) who has a negative case, and taking goes on. Leaves >= 2 patients
    for training; InputError when the cohort is too small for that."""
    by_patient: dict[str, list[PlannedCase]] = {}
    for c in planned:
        by_patient.setdefault(c.patient, []).append(c)
    if min_cases < 1 or len(by_patient) < 3 or sum(len(v) for v in by_patient.values()) - min_cases < 2:
        raise InputError("--min-test-cases", f"cannot hold out >= {min_cases} test cases of {len(planned)} "
                                             "and keep 2 patients for training")
    pools = [list(rng.permutation(sorted(p for p, cs in by_patient.items() if cs[0].tracer == t)))
             for t in TRACERS]
    pools = [p for p in pools if p]
    start = int(rng.integers(len(pools)))
    order: list[str] = []
    for n in range(max(len(p) for p in pools)):
        for k in range(len(pools)):
            pool = pools[(start + k) % len(pools)]
            if n < len(pool):
                order.append(str(pool[n]))
    negative = {p for p, cs in by_patient.items() if any(c.negative for c in cs)}
    chosen: list[str] = []
    for patient in order:
        if sum(len(by_patient[p]) for p in chosen) >= min_cases:
            break
        chosen.append(patient)
    if not negative & set(chosen):
        spare = [p for p in order if p in negative and p not in chosen]
        if spare:
            last = chosen.pop()
            same = [p for p in spare if by_patient[p][0].tracer == by_patient[last][0].tracer]
            chosen.append((same or spare)[0])
            for patient in order:
                if sum(len(by_patient[p]) for p in chosen) >= min_cases:
                    break
                if patient not in chosen and patient != last:
                    chosen.append(patient)
    if len(by_patient) - len(chosen) < 2:
        raise ValueError(f"cannot hold out >= {min_cases} test cases of {len(planned)} and keep 2 patients for training")
    return set(chosen)


def write_case(out: Path, case: PhantomCase) -> None:
    """Write the volumes, click file and metadata of one case into the cohort layout."""
    cid = case.case_id
    save_volume(out / "imagesTr" / f"{cid}_0000.nii.gz", np.round(case.ct).astype(np.int16, order="F"), case.affine)
    save_volume(out / "imagesTr" / f"{cid}_0001.nii.gz", case.pet, case.affine)
    save_volume(out / "labelsTr" / f"{cid}.nii.gz", case.label, case.affine)
    save_volume(out / "labelsTr_organs" / f"{cid}.nii.gz", case.organs, case.affine)
    if case.clicks is not None:
        write_clicks(out / "clicks" / f"{cid}_clicks.json", case.clicks)
    (out / "meta").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "meta" / f"{cid}.json", json.dumps(case.meta, indent=1) + "\n")


def generate_cohort(out, cases: int, seed: int, shape=(96, 96, 128), spacing=None, tracer: str = "mixed",
                    negatives: float = 0.4, min_test_cases: int | None = None) -> Path:
    """Generate `cases` phantom cases into `out` and write out/datalist.json; returns its path.
    `min_test_cases`: the testing split's rule (see plan_cohort).

    Raises InputError when `out` already holds cases of another cohort (files are never deleted)."""
    out = Path(out)
    shape, spacing = check_geometry(shape, spacing)
    planned, test_cases = plan_cohort(cases, seed, tracer, negatives, min_test_cases)
    if (out / "imagesTr").is_dir():
        stale = sorted(set(find_cases(out)) - {c.case_id for c in planned})
        if stale:
            raise InputError(out, f"holds {len(stale)} case(s) of another cohort (e.g. {stale[0]}); use an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    request = {"cases": cases, "seed": int(seed), "shape": list(shape), "spacing_mm": list(spacing),
               "tracer": tracer, "negatives": negatives, "min_test_cases": min_test_cases, "test_cases": test_cases}
    for n, pc in enumerate(planned):
        case = generate_case(pc.case_id, pc.seed, shape, spacing, pc.tracer, pc.negative, pc.centre)
        case.meta["patient"] = pc.patient
        case.meta["split"] = "testing" if pc.case_id in test_cases else "training"
        write_case(out, case)
        log.info("[%d/%d] %s: %d lesion(s), centre %s", n + 1, len(planned), pc.case_id, len(case.meta["lesions"]),
                 case.meta["centre_name"])
    atomic_write_text(out / "phantoms.json", json.dumps(request, indent=1) + "\n")
    datalist = build_datalist(out, test_cases=test_cases, num_folds=NUM_FOLDS, seed=int(seed),
                              check_data=False)   # the generator's own files, just written
    return write_datalist(datalist, out / "datalist.json")
