"""`petclick evaluate`: score saved predictions (steps 0..N-1 or one per case) against ground truth.

`--protocol autopet-iv` (default): Dice, FPV, FNV over 11 steps. `--protocol autopet-v`: Dice
(1 when both masks are empty), DMM, FPV, FNV over 6 steps by default (`--steps`), with AUC-DMM
aggregated both ways in summary.json.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from petclick.commands.argtypes import steps_count
from petclick.core.errors import InputError
from petclick.io.datalist import resolve_entry
from petclick.io.images import check_same_grid, checked_pet, load_volume
from petclick.metrics.cohort import datalist_entries, require_evaluated, run_cases, tracer_of
from petclick.metrics.editions import EDITIONS
from petclick.metrics.files import evaluate_case_files, find_ground_truth, find_predictions, step_files
from petclick.metrics.plots import save_case_mip
from petclick.metrics.report import format_summary, write_report

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Dice/FPV/FNV (and DMM for autopet-v) per step, AUCs and plots for saved predictions",
                       description="Score <case>_pred<k>.nii.gz (k = 0..N-1) or <case>.nii.gz predictions "
                                   "against <case>.nii.gz ground truth (paired by case id); writes cases.csv, "
                                   "summary.json, curves.png and mip/<case>.png into --out.")
    p.add_argument("--gt", required=True, type=Path, help="ground-truth folder: <case>.nii.gz (labelsTr layout)")
    p.add_argument("--pred", required=True, type=Path, help="prediction folder: <case>_pred<k>.nii.gz or <case>.nii.gz")
    p.add_argument("--out", required=True, type=Path, help="report folder")
    p.add_argument("--datalist", type=Path, default=None, help="datalist.json: tracer per case and PET paths for the MIPs")
    p.add_argument("--dataroot", type=Path, default=None, help="root of the datalist's relative paths (default: its folder)")
    p.add_argument("--images", type=Path, default=None, help="folder of <case>_0001.nii.gz PET files for the MIPs (imagesTr layout)")
    p.add_argument("--no-mip", action="store_true", help="skip the per-case MIP pictures")
    p.add_argument("--protocol", choices=sorted(EDITIONS), default="autopet-iv",
                   help="autopet-iv: Dice/FPV/FNV, 11 steps; autopet-v: Dice (empty/empty = 1), DMM, FPV, FNV, "
                        "6 steps (default autopet-iv)")
    p.add_argument("--steps", type=steps_count, default=None,
                   help="number of steps N (files k = 0..N-1; default 11 for autopet-iv, 6 for autopet-v)")
    p.set_defaults(func=run)


def _pet_path(case: str, images: Path | None, entry: dict | None, dataroot: Path | None) -> Path | None:
    if images is not None:
        for suffix in (".nii.gz", ".nii"):
            if (images / f"{case}_0001{suffix}").is_file():
                return images / f"{case}_0001{suffix}"
        return None
    if entry and "pet" in entry and dataroot is not None:
        return Path(resolve_entry(entry, dataroot)["pet"])
    return None


def run(args: argparse.Namespace) -> int:
    n_steps = args.steps or EDITIONS[args.protocol].n_steps
    final = n_steps - 1
    gts = find_ground_truth(args.gt)
    preds = find_predictions(args.pred)
    entries = datalist_entries(args.datalist)
    dataroot = args.dataroot or (args.datalist.parent if args.datalist else None)
    mip_dir = args.out / "mip"
    want_mip = not args.no_mip and (args.images is not None or args.datalist is not None)
    n_mips = 0

    def one(case: str):
        nonlocal n_mips
        if case not in preds:
            raise InputError(args.pred / f"{case}_pred0.nii.gz",
                             f"no prediction for {case} (<case>_pred0..{final}.nii.gz or <case>.nii.gz)")
        if case not in gts:
            raise InputError(args.gt / f"{case}.nii.gz", f"no ground truth for predicted case {case}")
        files = step_files(case, preds[case], args.pred, n_steps)
        tracer = tracer_of(case, entries.get(case))
        rows, gt_vol, kept = evaluate_case_files(case, gts[case], files, tracer, n_steps, keep_steps=(0, final),
                                                 protocol=args.protocol)
        pet_path = _pet_path(case, args.images, entries.get(case), dataroot) if want_mip else None
        if pet_path is not None:
            pet = checked_pet(load_volume(pet_path))
            check_same_grid(gt_vol, pet, "PET")
            panels = {"prediction": kept[final]} if files[0][0] is None else {"step 0": kept[0], f"step {final}": kept[final]}
            save_case_mip(mip_dir / f"{case}.png", pet.array, pet.affine, gt_vol.array, panels, tracer=tracer,
                          title=f"{case} ({tracer})")
            n_mips += 1
        elif want_mip:
            log.warning("%s: no PET found for the MIP picture", case)
        return rows

    cases = sorted(set(gts) | set(preds))
    rows, skipped = run_cases((c, lambda c=c: one(c)) for c in cases)
    meta = {"command": "evaluate", "gt": str(args.gt), "pred": str(args.pred), "predictor": str(args.pred.name)}
    if args.protocol != "autopet-iv":
        meta.update(protocol=args.protocol, n_steps=n_steps)
    summary = write_report(args.out, rows, skipped, meta, n_steps, args.protocol)
    print(format_summary(summary))
    print(f"wrote {args.out}/cases.csv, summary.json" + (", curves.png" if rows else "")
          + (f", {n_mips} MIPs in mip/" if n_mips else ""))
    require_evaluated(summary, args.gt if not cases else None)
    return 0
