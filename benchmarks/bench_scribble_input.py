"""Scribbles as model input: which training curriculum and encoding score best through the autoPET V loop.

Trains the demo recipe (the `demo` preset's snapshot run per fold, petclick's training loop as a
bundle's train.py runs it) in several variants on a phantom cohort, then runs each fold's ensemble
of its repeats through `autopet-v` (an initial prediction and 5 corrective scribble steps, each
case's stroke strategy dealt round-robin, masks prob >= 0.5) on that fold's validation cases,
pooled over the folds; suv-threshold on the same cases. Variants (`--variants`):

- clicks+edt: the shipped click curriculum and encoding (edt r=5), fed scribble voxels as clicks;
- scribbles+edt: choice (a), the scribble curriculum, every scribble voxel a click point (edt r=5);
- scribbles+stroke: choice (b), the scribble curriculum with the `stroke` encoding (sigma 2 voxels,
  the Gaussian blur of the stroke mask, combined by sum).

    python benchmarks/bench_scribble_input.py --cohort-seed 7 --folds 2
    python benchmarks/bench_scribble_input.py --cohort-seed 7 --folds 2 --variants scribbles+edt --set training#num_epochs=20

Prints AUC-Dice and AUC-DMM (mean over cases with lesions and F1 pooled per tracer), final Dice
and DMM, and the mean FPV/FNV AUCs; --json keeps every number.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import cohort, fold_config  # noqa: E402  (the demo recipe's config, one place)

from petclick.config.packaged import INPUT_TEMPLATE  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "clicks+edt": {},
    "scribbles+edt": {"clicks#curriculum#kind": "scribbles"},
    "scribbles+stroke": {"clicks#curriculum#kind": "scribbles",
                         "clicks#encoding": {"encoding": "stroke", "sigma": 2.0}},
}
PROTOCOL = "autopet-v"


def train(datalist: Path, work: Path, folds: int, overrides: dict, user: dict,
          reuse: bool = False) -> tuple[dict[int, list[Path]], float]:
    """Train folds 0..folds-1 into `work` ({fold: [model.pt by repeat]}, seconds); `reuse` keeps a
    fold an earlier run finished there (its status.json)."""
    from petclick.training.loop import train_fold

    out, t0 = {}, time.time()
    for fold in range(folds):
        ckpt = work / f"segresnet_{fold}" / "model"
        status = ckpt / "status.json"
        if not (reuse and status.is_file() and json.loads(status.read_text()).get("state") == "finished"):
            train_fold(fold_config(datalist, fold, ckpt, overrides, user))
        out[fold] = sorted(ckpt.glob("repeat*/model.pt"), key=lambda p: int(p.parent.name[6:]))
        print(f"    fold {fold}: {len(out[fold])} checkpoints ({time.time() - t0:.0f} s)", flush=True)
    return out, time.time() - t0


def rows_of(predictor, entries: list[dict], root: Path, strategies: dict[str, str], steps: int) -> list[dict]:
    from petclick.inference.protocol import run_protocol
    from petclick.io.datalist import entry_case_id, resolve_entry
    from petclick.io.images import load_case

    rows = []
    for e in entries:
        r, case_id = resolve_entry(e, root), entry_case_id(e)
        case = load_case(r["image"], r["pet"], r["label"])
        rows += run_protocol(predictor, case, case_id=case_id, tracer=str(e.get("tracer", "unknown")),
                             protocol=PROTOCOL, steps=range(steps), strategy=strategies[case_id])
    return rows


def score(rows: list[dict], steps: int) -> dict[str, Any]:
    from petclick.metrics.aggregate import cohort_summary
    from petclick.metrics.editions import edition

    ed = edition(PROTOCOL)
    s = cohort_summary(rows, [], {}, steps, ed.metrics, ed.nan_policy)
    o, a = s["overall"], s["auc_dmm"]
    return {"n": s["n_evaluated"], "dice_auc": o["dice_auc"]["mean"], "dice_final": o["dice_final"]["mean"],
            "dmm_auc_cases": a["mean_over_cases_with_lesions"]["value"],
            "dmm_auc_pooled": a["pooled_f1_mean_over_tracers"]["value"], "dmm_final": o["dmm_final"]["mean"],
            "fpv_auc": o["fpv_auc"]["mean"], "fnv_auc": o["fnv_auc"]["mean"],
            "per_step_dice": s["per_step"]["dice"]["mean"], "per_step_dmm": s["per_step"]["dmm"]["mean"]}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    from petclick.commands.hpo import parse_sets
    from petclick.core.yamlio import read_yaml
    from petclick.clicks.scribbles import case_strategies
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.inference.predictors import SuvThresholdPredictor
    from petclick.io.datalist import entry_case_id, load_datalist
    from petclick.workflows.demo import DEMO_COHORT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort-seed", type=int, default=7, help="phantom generator seed (the demo's is 7)")
    ap.add_argument("--cases", type=int, default=DEMO_COHORT["cases"])
    ap.add_argument("--shape", type=int, nargs=3, default=DEMO_COHORT["shape"])
    ap.add_argument("--folds", type=int, default=2, help="train and validate folds 0..N-1")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--set", nargs="*", default=[], help="overrides for every variant, section#key=value")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--data", type=Path)
    ap.add_argument("--work", type=Path, help="keep the trained models here (default: a temporary folder)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--reuse", action="store_true", help="keep folds already trained in --work (train_s then "
                                                         "counts only what this run trained)")
    args = ap.parse_args(argv)

    data = args.data or Path(tempfile.gettempdir()) / f"petclick_quality_{args.cohort_seed}_{args.cases}"
    datalist = cohort(data, args.cases, args.cohort_seed, args.shape, DEMO_COHORT["min_test_cases"])
    user = {k: v for k, v in read_yaml(INPUT_TEMPLATE).items()
            if k in ("preset", "num_repeats", "clicks", "overrides", "algo_overrides")}
    common = {**parse_sets(args.set), "training#seed": args.seed}
    entries = load_datalist(datalist)["training"]
    val = {f: [e for e in entries if int(e["fold"]) == f] for f in range(args.folds)}
    strategies = case_strategies(entry_case_id(e) for f in val for e in val[f])
    n_cases = sum(len(v) for v in val.values())
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_scribble_input_"))
    results: dict[str, Any] = {}
    try:
        base = [r for f in val for r in rows_of(SuvThresholdPredictor(), val[f], datalist.parent, strategies, args.steps)]
        results["suv-threshold"] = {**score(base, args.steps), "train_s": 0.0}
        for name in args.variants:
            print(f"== {name}: training {args.folds} fold(s)", flush=True)
            ckpts, seconds = train(datalist, work / name, args.folds, {**VARIANTS[name], **common}, user, args.reuse)
            rows = [r for f in val for r in rows_of(EnsemblePredictor(ckpts[f]), val[f], datalist.parent,
                                                    strategies, args.steps)]
            results[name] = {**score(rows, args.steps), "train_s": seconds}
            print(f"   {name}: AUC-Dice {_fmt(results[name]['dice_auc'])}, AUC-DMM "
                  f"{_fmt(results[name]['dmm_auc_cases'])}", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ncohort seed {args.cohort_seed} ({args.cases} cases {tuple(args.shape)}), validation cases of folds "
          f"0..{args.folds - 1}: {n_cases} cases; {args.steps} steps (autopet-v, prob >= 0.5); overrides {common}")
    keys = ("dice_auc", "dmm_auc_cases", "dmm_auc_pooled", "dice_final", "dmm_final", "fpv_auc", "fnv_auc", "train_s")
    print(f"{'variant':<18}" + "".join(f"{k:>15}" for k in keys))
    for name, r in results.items():
        print(f"{name:<18}" + "".join(f"{_fmt(r[k]):>15}" for k in keys))
    print("dmm_auc_cases: mean over cases with lesions; dmm_auc_pooled: F1 pooled per tracer, mean over tracers")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"data": str(data), "work": str(work), "json": str(args.json)},
                                         "results": results}, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
