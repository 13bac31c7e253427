"""`petclick datalist`: a MONAI datalist for a real autoPET-layout dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from petclick.io.datalist import build_datalist, write_datalist


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("datalist", help="build datalist.json (5 folds grouped by patient) for the autoPET layout")
    p.add_argument("--dataroot", required=True, type=Path, help="folder with imagesTr/ and labelsTr/")
    p.add_argument("--clicks", type=Path, default=None, help="folder of <case>_clicks.json (default: DATAROOT/clicks if present)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--no-geometry-check", action="store_true", help="skip the header shape/affine comparison")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    datalist = build_datalist(args.dataroot, args.clicks, args.folds, args.seed, check_geometry=not args.no_geometry_check)
    write_datalist(datalist, args.out)
    n_train, n_test = len(datalist["training"]), len(datalist["testing"])
    print(f"wrote {args.out}: {n_train} training cases in {args.folds} folds, {n_test} testing cases")
    return 0
