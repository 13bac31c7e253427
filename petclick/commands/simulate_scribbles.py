"""`petclick simulate-scribbles`: one autoPET V corrective-scribble step, cumulative scribbles out."""

from __future__ import annotations

import argparse
from pathlib import Path

from petclick.clicks.scribbles import LABELLINGS, add_scribble, scribble_step
from petclick.clicks.strokes import DEFAULT_SEED, STRATEGIES
from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks, read_clicks, write_clicks
from petclick.io.images import check_binary, check_same_grid, load_volume


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate-scribbles", help="one autoPET V corrective-scribble step (the official loop's rule)",
        description="From the previous prediction's errors (FP = pred & ~label, FN = label & ~pred) take, for each, "
                    "the largest 8-connected component of any axial slice and draw one 1-voxel stroke on it "
                    "(centerline, random or boundary); add the tumour stroke when the background stroke has as many "
                    "voxels or fewer, the background stroke otherwise. Lesion-free labels get no scribbles. Writes "
                    "the previous scribbles plus this step's stroke (what the official loop saves as "
                    "iter_<k>_scribbles.json).")
    p.add_argument("--label", required=True, type=Path, help="lesion mask NIfTI (0/1)")
    p.add_argument("--pred", required=True, type=Path, help="previous prediction NIfTI (0/1) on the label's grid")
    p.add_argument("--previous", type=Path, default=None,
                   help="scribbles so far (plain or grand-challenge JSON); default: none")
    p.add_argument("--strategy", required=True, choices=sorted(STRATEGIES), help="stroke strategy")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the random and boundary strokes (default {DEFAULT_SEED}, the official loop's)")
    p.add_argument("--labelling", choices=sorted(LABELLINGS), default="official",
                   help="official: label slices as the official loop does (cc3d on bool slices, faults of cc3d "
                        ">= 3.27 included); exact: true 8-connectivity (default official)")
    p.add_argument("--out", required=True, type=Path, help="scribble JSON to write (cumulative)")
    p.add_argument("--format", choices=("plain", "gc"), default="plain",
                   help="plain {tumor, background} or grand-challenge 'Multiple points', one point per voxel "
                        "(default plain)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.out.is_dir():
        raise InputError(args.out, "is a folder; --out must name a scribble JSON file")
    label = load_volume(args.label, dtype=None)
    pred = load_volume(args.pred, dtype=None)
    check_same_grid(label, pred, "prediction")
    check_binary(label, "label")
    check_binary(pred, "prediction")
    previous = Clicks() if args.previous is None else read_clicks(args.previous, shape=label.array.shape, budget=None)
    step = scribble_step(pred.array, label.array, args.strategy, args.seed, args.labelling)
    scribbles = add_scribble(previous, step)
    write_clicks(args.out, scribbles, args.format)
    if step.kind is None:
        print(f"no scribble added ({step.reason})")
    else:
        print(f"added a {len(step.points)}-voxel {step.kind} stroke on slice k={step.z} "
              f"(candidate strokes: tumour {step.tumor_voxels}, background {step.background_voxels} voxels)")
    print(f"wrote {len(scribbles.tumor)} tumour and {len(scribbles.background)} background scribble voxels "
          f"to {args.out}")
    return 0
