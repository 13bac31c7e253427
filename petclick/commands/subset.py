"""`petclick subset`: choose the K checkpoints of an ensemble whose mean agrees best with the whole
ensemble on validation cases, and write them as a subset file that every model option accepts.

Thin wiring over petclick.inference.subset: the cases of a datalist split (with their click
files), `choose_subset`, `write_subset` (atomic JSON with the choice's meta) and `prefix_report`
(how far the first 1..K stay from the whole ensemble) printed as a table.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from petclick.commands.predict import add_algo_weights_arg, algo_weights
from petclick.core.errors import InputError
from petclick.inference.subset import CRITERIA, STEP_CHOICES

log = logging.getLogger(__name__)
#: The default split: the training entries of `--fold` (the cases that fold's models never trained on).
VALIDATION = "validation"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("subset", help="choose the K checkpoints of an ensemble that agree best with it (fast reader)",
                       description="Score every checkpoint of --predictor on the validation cases of a datalist "
                                   "(their click files), add checkpoints greedily until K, write them as JSON "
                                   "(--out) and print the agreement of the first 1..K with the whole ensemble. "
                                   "The file is accepted wherever a trained model is: `petclick interactive "
                                   "--predictor subset.json --incremental frozen`, `petclick predict --models "
                                   "subset.json`, `petclick label --models subset.json`.")
    p.add_argument("--predictor", required=True, nargs="+", metavar="MODELS",
                   help="the whole ensemble: AutoRunner work_dir(s), trained bundle folders or .pt checkpoints")
    p.add_argument("--datalist", required=True, type=Path)
    p.add_argument("--split", default=VALIDATION,
                   help="cases to choose on: validation (default: the training entries of --fold) or a split of "
                        "the datalist (e.g. training); never the cases the subset is then measured on")
    p.add_argument("--fold", type=int, default=0, help="the fold whose validation entries --split validation takes")
    p.add_argument("--dataroot", type=Path, default=None, help="root of the datalist's relative paths (default: its folder)")
    p.add_argument("--k", type=_positive, required=True, help="checkpoints to choose")
    p.add_argument("--criterion", choices=CRITERIA, default="mask",
                   help="agreement with the whole ensemble: mask (default: mean mask Dice over the scored states), "
                        "worst-mask (the smallest), prob (mean |dp| on the support)")
    p.add_argument("--steps", choices=STEP_CHOICES, default="ends",
                   help="click states scored: ends (default: no clicks and all the case's clicks) or protocol "
                        "(every official step 0..10; slower)")
    p.add_argument("--max-cases", type=_positive, default=None, metavar="N", help="only the first N cases of the split")
    p.add_argument("--out", required=True, type=Path, help="subset file to write (JSON)")
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N")
    add_algo_weights_arg(p)
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    from petclick.commands.argtypes import bounded

    return int(bounded(int, 1)(text))


def _entries(args: argparse.Namespace) -> list[dict]:
    """The datalist entries of the split (validation: fold `--fold` of training), at most --max-cases."""
    from petclick.io.datalist import load_datalist, split_fold

    data = load_datalist(args.datalist)
    if args.split == VALIDATION and VALIDATION not in data:
        _, entries = split_fold(data.get("training", []), args.fold, args.datalist)
    elif isinstance(data.get(args.split), list):
        entries = data[args.split]
    else:
        raise InputError(args.datalist, f"no split {args.split!r} (found {[k for k, v in data.items() if isinstance(v, list)]})")
    if not entries:
        where = f"fold {args.fold} of 'training'" if args.split == VALIDATION else f"split {args.split!r}"
        raise InputError(args.datalist, f"no case in {where} to choose the subset on")
    return entries[: args.max_cases] if args.max_cases else entries


def _cases(args: argparse.Namespace) -> tuple[list[str], list[tuple[Any, Any]]]:
    """(case ids, [(CaseVolumes, Clicks)]) of the split: CT, PET, label where given and the case's click file."""
    from petclick.io.clickfile import read_clicks
    from petclick.io.datalist import entry_case_id, resolve_entry
    from petclick.io.images import load_case
    from petclick.io.clickpolicy import BUDGET

    root = args.dataroot or args.datalist.parent
    ids, cases = [], []
    for raw in _entries(args):
        case_id, entry = entry_case_id(raw), resolve_entry(raw, root)
        if "clicks" not in entry:
            raise InputError(args.datalist, f"{case_id}: the entry has no 'clicks' file, needed to score its click states")
        case = load_case(entry["image"], entry["pet"], entry.get("label"))
        ids.append(case_id)
        cases.append((case, read_clicks(entry["clicks"], shape=case.shape, policy="strict", budget=BUDGET)))
    return ids, cases


def format_report(rows: list[dict[str, Any]]) -> str:
    """The prefix report (petclick.inference.subset.prefix_report) as a small text table."""
    columns = [("k", "K"), ("mask_dice_mean", "mask Dice mean"), ("mask_dice_worst", "mask Dice worst"),
               ("mean_abs_dp", "mean |dp|"), ("label_dice_step_gap", "label Dice step gap"),
               ("label_dice_sum_gap", "label Dice sum gap")]
    columns = [(key, title) for key, title in columns if any(key in r for r in rows)]
    cells = [[title for _, title in columns]]
    cells += [[f"{r[key]:.4f}" if isinstance(r.get(key), float) else str(r.get(key, "-")) for key, _ in columns]
              for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells)


def run(args: argparse.Namespace) -> int:
    from petclick.commands.predict import resolve_device
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.inference.predictors import get_predictor
    from petclick.inference.subset import checkpoint_probabilities, choose_subset, prefix_report, write_subset

    if args.out.suffix.lower() != ".json":
        raise InputError(args.out, "the subset file must end in .json (that is how model options recognise it)")
    predictor = get_predictor(args.predictor, device=resolve_device(args.device), algo_weights=algo_weights(args))
    if not isinstance(predictor, EnsemblePredictor):
        raise InputError("--predictor", "a subset needs trained checkpoints, not a built-in predictor")
    if not 1 <= args.k <= len(predictor.checkpoints):
        raise InputError("--k", f"must lie in 1..{len(predictor.checkpoints)} (the ensemble's checkpoints), got {args.k}")
    ids, cases = _cases(args)
    log.info("choosing %d of %d checkpoints on %d case(s) (%s, %s)", args.k, len(predictor.checkpoints), len(ids),
             args.criterion, args.steps)
    data = checkpoint_probabilities(predictor, cases, args.steps)
    chosen = choose_subset(predictor, cases, args.k, args.criterion, args.steps, data=data)
    meta: dict[str, Any] = {"k": args.k, "criterion": args.criterion, "steps": args.steps, "cases": ids,
                            "datalist": str(args.datalist), "split": args.split,
                            "ensemble": [str(m) for m in args.predictor], "ensemble_size": len(predictor.checkpoints)}
    if args.split == VALIDATION:
        meta["fold"] = args.fold
    if predictor.algo_weights is not None:
        meta["algo_weights"] = dict(predictor.algo_weights)
    path = write_subset(args.out, chosen, meta)
    print(f"chose {len(chosen)} of {len(predictor.checkpoints)} checkpoints on {len(ids)} case(s) "
          f"({args.criterion}, steps {args.steps}):")
    for n, c in enumerate(chosen, 1):
        print(f"  {n}. {c}")
    print("agreement of the first K with the whole ensemble:")
    print(format_report(prefix_report(data, chosen)))
    print(f"wrote {path}")
    return 0
