"""`petclick phantoms`: generate the synthetic whole-body PET/CT cohort and its datalist."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from petclick.commands.argtypes import bounded
from petclick.core.errors import InputError
from petclick.phantoms.case import MIN_SHAPE
from petclick.phantoms.cohort import TRACER_CHOICES, generate_cohort
from petclick.workflows.dicom_export import CT_ZOOM, export_cohort

_fraction = bounded(float, 0.0, 1.0, message="must be a fraction between 0 and 1")
_positive_int = bounded(int, 1)
_mm = bounded(float, 0.0, lo_open=True, message="spacing must be > 0 mm")


def _size(text: str) -> int:
    value = _positive_int(text)
    if value < MIN_SHAPE:
        raise argparse.ArgumentTypeError(f"each size must be >= {MIN_SHAPE} voxels, got {text}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantoms", help="generate a synthetic whole-body PET/CT cohort (autoPET layout + datalist.json)",
                       description="Write DIR/imagesTr (CT _0000, PET _0001), labelsTr, labelsTr_organs, clicks, meta "
                                   "and DIR/datalist.json (5 folds grouped by patient, ~20%% of patients in testing, "
                                   "or --min-test-cases).")
    p.add_argument("--out", required=True, type=Path, help="output folder (new, or holding this same cohort)")
    p.add_argument("--cases", required=True, type=_positive_int, help="number of cases (studies)")
    p.add_argument("--seed", type=int, default=0, help="cohort seed: the same seed gives identical files")
    p.add_argument("--shape", type=_size, nargs=3, default=(96, 96, 128), metavar=("X", "Y", "Z"),
                   help="voxels per case (default 96 96 128; 400 400 326 is the autoPET grid)")
    p.add_argument("--spacing", type=_mm, nargs=3, default=None, metavar=("SX", "SY", "SZ"),
                   help="voxel size in mm (default: fit an 816 x 816 x 978 mm whole-body field of view)")
    p.add_argument("--tracer", choices=TRACER_CHOICES, default="mixed", help="tracer of every patient (default mixed)")
    p.add_argument("--negatives", type=_fraction, default=0.4, help="fraction of cases without lesions (default 0.4)")
    p.add_argument("--min-test-cases", type=_positive_int, default=None,
                   help="testing split: the fewest whole patients (alternating tracers, at least one case without "
                        "lesions) holding at least this many cases (default: about 20%% of the patients at random)")
    p.add_argument("--dicom", action="store_true",
                   help="also write each case as a DICOM PET/CT study: DIR/dicom/<case>/CT (its own grid, "
                        "--dicom-ct-zoom times finer) and PT (Bq/mL with the SUV tags); DIR/dicom/studies.json")
    p.add_argument("--dicom-ct-zoom", type=_positive_int, default=CT_ZOOM, metavar="N",
                   help=f"the DICOM CT's grid is N times finer than the PET's per axis (default {CT_ZOOM})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.out.is_dir():
        raise InputError(args.out, "exists and is not a folder")
    path = generate_cohort(args.out, args.cases, args.seed, tuple(args.shape),
                           None if args.spacing is None else tuple(args.spacing), args.tracer, args.negatives,
                           args.min_test_cases)
    data = json.loads(path.read_text())
    train, test = data["training"], data["testing"]
    tracers = sorted({e["tracer"] for e in train + test})
    print(f"wrote {len(train) + len(test)} cases ({', '.join(tracers)}) to {args.out}; "
          f"{path}: {len(train)} training in {data['num_folds']} folds, {len(test)} testing")
    if args.dicom:
        index = export_cohort(args.out, args.out / "dicom", ct_zoom=args.dicom_ct_zoom)
        print(f"wrote {len(train) + len(test)} DICOM PET/CT studies to {index.parent} ({index.name})")
    return 0
