"""`petclick simulate-clicks`: official-compatible tumour and background clicks for one case, or a click-file check."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from petclick.clicks.simulate import simulate_clicks
from petclick.commands.argtypes import bounded
from petclick.core.errors import InputError
from petclick.io.clickfile import read_clicks, write_clicks
from petclick.io.images import check_binary, check_same_grid, checked_pet, load_volume


_non_negative_int = bounded(int, 0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate-clicks", help="simulate clicks by the official autoPET IV rule (or check a click file)",
        description="Tumour clicks at the centres (max EDT) of up to BUDGET randomly drawn lesion components "
                    "(26-connectivity), then boundary clicks cycling over them; background clicks the same way on "
                    "the components of PET > p99.75 of non-lesion PET. With --check, validate an existing click "
                    "file against the PET grid and the budget instead.")
    p.add_argument("--label", required=True, type=Path, help="lesion mask NIfTI (0/1) on the PET grid")
    p.add_argument("--pet", required=True, type=Path, help="PET NIfTI (SUV)")
    p.add_argument("--out", type=Path, help="click JSON to write (required unless --check)")
    p.add_argument("--budget", type=_non_negative_int, default=10, help="clicks of each kind (default 10)")
    p.add_argument("--seed", type=int, default=42, help="seed of the component draw and boundary choice (default 42)")
    p.add_argument("--center-offset", type=_non_negative_int, default=0,
                   help="max random shift (voxels) of centre clicks, applied only inside the component (default 0)")
    p.add_argument("--edge-offset", type=_non_negative_int, default=0,
                   help="max random shift (voxels) of boundary clicks, applied only inside the component (default 0)")
    p.add_argument("--format", choices=("plain", "gc"), default="plain",
                   help="plain {tumor, background} or grand-challenge 'Multiple points' JSON (default plain)")
    p.add_argument("--check", type=Path, metavar="CLICKS",
                   help="validate this click file (schema, integer in-volume voxels, at most BUDGET per kind) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    pet = checked_pet(load_volume(args.pet))
    label = load_volume(args.label)
    check_same_grid(pet, label, "label")
    check_binary(label)
    if args.check is not None:
        clicks = read_clicks(args.check, shape=pet.array.shape, budget=args.budget)
        lesion = label.array != 0
        inside = sum(bool(lesion[p]) for p in clicks.tumor)
        print(f"{args.check}: {len(clicks.tumor)} tumour ({inside} inside the label) and "
              f"{len(clicks.background)} background clicks, valid for {args.pet} (budget {args.budget})")
        return 0
    if args.out is None:
        raise InputError(None, "simulate-clicks needs --out FILE (or --check CLICKS)")
    if args.out.is_dir():
        raise InputError(args.out, "is a folder; --out must name a click JSON file")
    clicks = simulate_clicks(label.array.astype(np.uint8), pet.array, budget=args.budget, seed=args.seed,
                             center_offset=args.center_offset, edge_offset=args.edge_offset)
    write_clicks(args.out, clicks, args.format)
    print(f"wrote {len(clicks.tumor)} tumour and {len(clicks.background)} background clicks to {args.out}")
    return 0
