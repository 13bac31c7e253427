"""`petclick datalist`: a validated MONAI datalist for a real autoPET-layout dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.io.datalist import build_datalist, find_cases, label_cases, select_test_cases, write_datalist


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datalist", help="build datalist.json (5 folds grouped by patient) for the autoPET layout",
                       description="Lists every case with a CT, PET or label file and validates it: CT, PET and "
                                   "label present, every file readable and 3D, all on the PET's grid, labels 0/1, "
                                   "PET with uptake, CT not all NaN, click files valid. The first bad case is an "
                                   "error (exit 2); --skip-bad leaves bad cases out and lists them with reasons.")
    p.add_argument("--dataroot", required=True, type=Path, help="folder with imagesTr/ and labelsTr/")
    p.add_argument("--clicks", type=Path, default=None, help="folder of <case>_clicks.json (default: DATAROOT/clicks if present)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.0,
                   help="hold out about this fraction of the labelled cases as the testing split: whole patients, "
                        "balanced by tracer (default 0: testing only from imagesTs/)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--skip-bad", action="store_true",
                   help="leave bad cases out and write them with their reasons to OUT's name + .skipped.json")
    p.add_argument("--headers-only", action="store_true",
                   help="read only the image headers (presence, 3D, grid): fast, but truncated files, label values "
                        "and PET/CT values are not checked")
    p.add_argument("--no-geometry-check", action="store_true", help="with --headers-only: skip the shape/affine comparison")
    p.set_defaults(func=run)


def skipped_path(out: Path) -> Path:
    """Where --skip-bad lists the skipped cases: `<out without .json>.skipped.json`."""
    return out.with_name((out.name[:-5] if out.name.endswith(".json") else out.name) + ".skipped.json")


def run(args: argparse.Namespace) -> int:
    if args.folds < 1:
        raise InputError(None, f"--folds must be >= 1, got {args.folds}")
    if not 0.0 <= args.test_fraction < 1.0:
        raise InputError(None, f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    skipped: list | None = [] if args.skip_bad else None
    test_cases = []
    if args.test_fraction > 0:
        cases = list(dict.fromkeys(find_cases(args.dataroot) + label_cases(args.dataroot)))
        test_cases = select_test_cases(cases, args.test_fraction, args.seed)
    datalist = build_datalist(args.dataroot, args.clicks, args.folds, args.seed, test_cases=test_cases,
                              check_geometry=not args.no_geometry_check, check_data=not args.headers_only,
                              skipped=skipped)
    write_datalist(datalist, args.out)
    n_train, n_test = len(datalist["training"]), len(datalist["testing"])
    print(f"wrote {args.out}: {n_train} training cases in {args.folds} folds, {n_test} testing cases"
          + (f" ({len(test_cases)} held out by patient and tracer)" if test_cases else ""))
    no_clicks = sum(1 for e in datalist["training"] + datalist["testing"] if "clicks" not in e)
    if no_clicks:
        print(f"WARNING: {no_clicks} case(s) have no click file: click validation refuses them; write them with "
              f"`petclick simulate-clicks --dataroot {args.dataroot}` and run petclick datalist again")
    if skipped is not None:
        listing = skipped_path(args.out)
        atomic_write_text(listing, json.dumps({"dataroot": str(args.dataroot), "skipped": skipped}, indent=1) + "\n")
        print(f"skipped {len(skipped)} bad case(s), listed with reasons in {listing}")
    return 0
