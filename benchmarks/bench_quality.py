"""Quality of the demo recipe: the 20-checkpoint ensemble, one checkpoint alone and suv-threshold,
through the official 11-step protocol, over several training seeds, on a phantom cohort whose seed
is given on the command line.

    python benchmarks/bench_quality.py --cohort-seed 7                       # the demo cohort, testing split
    python benchmarks/bench_quality.py --cohort-seed 21 --seeds 0 1 2
    python benchmarks/bench_quality.py --cohort-seed 7 --split validation --seeds 0 --set training#lr=3e-3

For each training seed it trains every fold's repeats as a bundle's train.py does (petclick's loop,
the config fill_template_config would write for the `demo` preset plus `--set` overrides), then:
- `--split testing`: the ensemble of every checkpoint (5 folds x 4 repeats), one checkpoint alone
  (fold 0's last repeat) and suv-threshold on the testing cases;
- `--split validation` (for choosing a recipe without touching the testing cases): each fold's
  ensemble of its repeats, and its last repeat alone, on that fold's validation cases, pooled over
  the folds; suv-threshold on the same cases.
It prints the mean 11-step curves of Dice, FPV and FNV with their spread (min-max over seeds),
the AUCs and the issue-13 criteria, and writes every number to --json.

Post-processing (`--postprocess`, default `default`): the models' masks go through petclick's
default post-processing, as `petclick predict`, `gc` and the demo ship them (click consistency:
a tumour click the mask misses grows the model's low-probability region or the 41%-of-peak SUV
iso-contour around it; a covered background click cuts). Rows: `ensemble`, `single ckpt` (with
it), `ensemble raw` (the same ensemble, prob >= 0.5), `suv-threshold` (as defined: no
post-processing), `suv-thr + pp` (the baseline with the same post-processing) and `no model + pp`
(a predictor that finds nothing, then the post-processing: what the click rule alone scores).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from petclick.config.packaged import BUNDLES, INPUT_TEMPLATE

METRICS = ("dice", "fpv_ml", "fnv_ml")
STEPS = 11


def cohort(data: Path, cases: int, seed: int, shape, min_test_cases: int | None) -> Path:
    from petclick.workflows.demo import ensure_cohort

    return ensure_cohort(data, cases, seed, shape, min_test_cases)


def fold_config(datalist: Path, fold: int, ckpt: Path, overrides: dict[str, Any], user: dict[str, Any]) -> dict:
    """The resolved bundle config of `fold` for the demo input.yaml keys in `user` plus `overrides`."""
    from petclick.auto3dseg.algo import derive_from_data, merged_config
    from petclick.core.yamlio import apply_overrides, read_yaml
    from petclick.io.datalist import load_datalist

    template = read_yaml(BUNDLES / "segresnet" / "configs" / "hyper_parameters.yaml")
    cfg = merged_config(template, user, "segresnet")
    cfg = apply_overrides(cfg, overrides, "--set")
    request = json.loads((datalist.parent / "phantoms.json").read_text())
    stats = {"stats_summary": {"image_stats": {
        "spacing": {k: request["spacing_mm"] for k in ("min", "max", "median")},
        "shape": {"median": request["shape"]}}}}
    n_train = sum(1 for e in load_datalist(datalist)["training"] if int(e["fold"]) != fold)
    cfg = derive_from_data(cfg, stats, n_train)
    cfg.update(algo="segresnet", fold=fold, ckpt_path=str(ckpt), datalist=str(datalist),
               dataroot=str(datalist.parent), device="cpu")
    return cfg


def train_all(datalist: Path, work: Path, seed: int, overrides: dict, user: dict, folds: int) -> dict[str, Any]:
    """Train every fold's repeats (training seed `seed`); returns {fold: [model.pt paths]} and timing."""
    from petclick.training.loop import train_fold

    out, t0 = {}, time.time()
    for fold in range(folds):
        ckpt = work / f"segresnet_{fold}" / "model"
        cfg = fold_config(datalist, fold, ckpt, {**overrides, "training#seed": seed}, user)
        train_fold(cfg)
        out[fold] = sorted(ckpt.glob("repeat*/model.pt"), key=lambda p: int(p.parent.name[6:]))
        print(f"  seed {seed} fold {fold}: {len(out[fold])} checkpoints ({time.time() - t0:.0f} s)", flush=True)
    return {"checkpoints": out, "train_s": time.time() - t0}


class NoModel:
    """A predictor that finds nothing (probability 0): what post-processing alone makes of the clicks."""

    name = "no model"

    def predict(self, case, clicks):
        return np.zeros(case.shape, np.float32)


def protocol_rows(predictor, entries: list[dict], dataroot: Path, postprocess: dict | None = None) -> list[dict]:
    """The 11-step rows of `predictor` on `entries`, masks post-processed by `postprocess` (None: prob >= 0.5)."""
    from petclick.io.clickfile import read_clicks
    from petclick.io.datalist import entry_case_id, resolve_entry
    from petclick.io.images import load_case
    from petclick.inference.protocol import run_protocol

    rows = []
    for e in entries:
        r = resolve_entry(e, dataroot)
        case = load_case(r["image"], r["pet"], r["label"])
        rows += run_protocol(predictor, case, read_clicks(r["clicks"]), case_id=entry_case_id(e),
                             tracer=str(e.get("tracer", "unknown")), session={"postprocess": postprocess})
    return rows


def curves(rows: list[dict]) -> dict[str, list[float]]:
    """Cohort-mean curve per metric over the 11 steps (Dice over cases with lesions)."""
    out = {}
    for m in METRICS:
        out[m] = [float(np.nanmean([r[m] for r in rows if r["step"] == k] or [np.nan])) for k in range(STEPS)]
    return out


def auc(curve: list[float]) -> float:
    from petclick.metrics.aggregate import auc_trapezoid

    return auc_trapezoid(curve)


def kept_checkpoints(seed_dir: Path, folds: int) -> dict[str, Any]:
    """The checkpoints train_all wrote under `seed_dir` ({fold: [model.pt by repeat]})."""
    out = {}
    for fold in range(folds):
        paths = sorted((seed_dir / f"segresnet_{fold}" / "model").glob("repeat*/model.pt"),
                       key=lambda p: int(p.parent.name[6:]))
        if not paths:
            raise SystemExit(f"{seed_dir / f'segresnet_{fold}'}: no checkpoints to rescore")
        out[fold] = paths
    return {"checkpoints": out, "train_s": float("nan")}


def evaluate(ckpts: dict[int, list[Path]], datalist: Path, split: str, pp: dict | None = None) -> dict[str, list[dict]]:
    """Protocol rows of the ensemble and the single checkpoint (see module docstring)."""
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.io.datalist import load_datalist

    data = load_datalist(datalist)
    root = datalist.parent
    if split == "testing":
        every = [p for f in sorted(ckpts) for p in ckpts[f]]
        return {"ensemble": protocol_rows(EnsemblePredictor(every), data["testing"], root, pp),
                "single": protocol_rows(EnsemblePredictor([ckpts[0][-1]]), data["testing"], root, pp)}
    out: dict[str, list[dict]] = {"ensemble": [], "single": []}
    for fold, paths in ckpts.items():
        val = [e for e in data["training"] if int(e["fold"]) == fold]
        out["ensemble"] += protocol_rows(EnsemblePredictor(paths), val, root, pp)
        out["single"] += protocol_rows(EnsemblePredictor([paths[-1]]), val, root, pp)
    return out


def split_entries(datalist: Path, split: str, folds: int) -> list[dict]:
    from petclick.io.datalist import load_datalist

    data = load_datalist(datalist)
    if split == "testing":
        return data["testing"]
    return [e for e in data["training"] if int(e["fold"]) < folds]


def summarise(name: str, per_seed: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Mean curves and spread (min, max over seeds), AUC and final values."""
    res: dict[str, Any] = {"name": name}
    for m in METRICS:
        arr = np.asarray([c[m] for c in per_seed], dtype=float)
        res[m] = {"mean": arr.mean(0).tolist(), "min": arr.min(0).tolist(), "max": arr.max(0).tolist()}
        aucs = [auc(c[m]) for c in per_seed]
        res[f"{m}_auc"] = {"mean": float(np.mean(aucs)), "min": float(np.min(aucs)), "max": float(np.max(aucs))}
    return res


def _fmt(x: float, digits: int = 2) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def print_table(results: list[dict[str, Any]], n_seeds: int) -> None:
    for m, digits in (("dice", 3), ("fpv_ml", 1), ("fnv_ml", 1)):
        print(f"\n{m}: mean over {n_seeds} training seed(s) at steps 0..10 [min-max at 0, 5, 10]")
        for r in results:
            c = r[m]
            cells = " ".join(f"{v:7.{digits}f}" for v in c["mean"])
            spread = ", ".join(f"{c['min'][k]:.{digits}f}-{c['max'][k]:.{digits}f}" for k in (0, 5, 10))
            print(f"  {r['name']:>14} {cells}  [{spread}]")
    print(f"\n{'predictor':>16} {'Dice AUC':>16} {'Dice@0':>7} {'Dice@10':>8} {'FPV AUC mL':>18} {'FNV AUC mL':>12}")
    for r in results:
        d, f = r["dice_auc"], r["fpv_ml_auc"]
        print(f"{r['name']:>16} {d['mean']:6.2f} [{d['min']:.2f}-{d['max']:.2f}] {r['dice']['mean'][0]:7.3f} "
              f"{r['dice']['mean'][10]:8.3f} {f['mean']:7.1f} [{f['min']:.0f}-{f['max']:.0f}] "
              f"{r['fnv_ml_auc']['mean']:12.1f}")


def criteria(model: dict[str, Any], base: dict[str, Any]) -> dict[str, bool]:
    """Issue 13's four criteria on the mean curves."""
    d, b = model["dice"]["mean"], base["dice"]["mean"]
    return {"dice_auc_above_baseline": model["dice_auc"]["mean"] > base["dice_auc"]["mean"],
            "dice10_not_below_baseline": d[10] >= b[10],
            "fpv_auc_below_baseline": model["fpv_ml_auc"]["mean"] < base["fpv_ml_auc"]["mean"],
            "dice10_at_least_dice0_plus_0.1": d[10] >= d[0] + 0.10}


def _set(values: list[str]) -> dict[str, Any]:
    """`--set section#key=value ...` as overrides: the parser `petclick hpo --set` uses (bad items: InputError)."""
    from petclick.commands.hpo import parse_sets

    return parse_sets(values)


def main(argv: list[str] | None = None) -> int:
    from petclick.workflows.demo import DEMO_COHORT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort-seed", type=int, required=True, help="phantom generator seed (the demo's is 7)")
    ap.add_argument("--cases", type=int, default=DEMO_COHORT["cases"])
    ap.add_argument("--shape", type=int, nargs=3, default=DEMO_COHORT["shape"])
    ap.add_argument("--min-test-cases", type=int, default=DEMO_COHORT["min_test_cases"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (training.seed)")
    ap.add_argument("--split", choices=("testing", "validation"), default="testing")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--input", type=Path, default=INPUT_TEMPLATE, help="input.yaml whose petclick keys to use")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides section#key=value (YAML values)")
    ap.add_argument("--data", type=Path, help="cohort folder (default <tmp>/petclick_quality_<seed>_<cases>)")
    ap.add_argument("--work", type=Path, help="keep the trained folds here (default: a temporary folder)")
    ap.add_argument("--threads", type=int, help="torch threads (default: the recipe's training.num_threads)")
    ap.add_argument("--json", type=Path, help="write curves, AUCs and criteria here")
    ap.add_argument("--rescore", action="store_true",
                    help="score the checkpoints kept in --work by an earlier run (e.g. under another --postprocess), "
                         "without training")
    ap.add_argument("--postprocess", default="default", metavar="default|off|FILE.yaml",
                    help="the models' post-processing: default = what petclick predict, gc and the demo apply "
                         "(click consistency); off = prob >= 0.5")
    args = ap.parse_args(argv)
    if args.rescore and args.work is None:
        ap.error("--rescore needs --work, the folder of an earlier run")
    from petclick.postprocess import RULES, make_config

    pp = (make_config(None, **{r: False for r in RULES}) if args.postprocess == "off"
          else make_config(None if args.postprocess == "default" else args.postprocess))
    data = args.data or Path(tempfile.gettempdir()) / f"petclick_quality_{args.cohort_seed}_{args.cases}"
    datalist = cohort(data, args.cases, args.cohort_seed, args.shape, args.min_test_cases)
    from petclick.core.yamlio import read_yaml
    from petclick.inference.predictors import SuvThresholdPredictor

    user = {k: v for k, v in read_yaml(args.input).items()
            if k in ("preset", "num_repeats", "clicks", "overrides", "algo_overrides")}
    overrides = _set(args.set)
    if args.threads:
        overrides["training#num_threads"] = args.threads
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_quality_"))
    per_seed: dict[str, list] = {"ensemble": [], "single": [], "ensemble raw": []}
    raw = make_config(None, **{r: False for r in RULES})
    times = []
    try:
        for seed in args.seeds:
            seed_dir = work / f"seed{seed}"
            if args.rescore:
                trained = kept_checkpoints(seed_dir, args.folds)
            else:
                shutil.rmtree(seed_dir, ignore_errors=True)
                trained = train_all(datalist, seed_dir, seed, overrides, user, args.folds)
                times.append(trained["train_s"])
            rows = evaluate(trained["checkpoints"], datalist, args.split, pp)
            for k in ("ensemble", "single"):
                per_seed[k].append(curves(rows[k]))
            if args.postprocess != "off":  # the models alone (prob >= 0.5), beside what post-processing adds
                per_seed["ensemble raw"].append(curves(evaluate(trained["checkpoints"], datalist, args.split, raw)["ensemble"]))
            c = per_seed["ensemble"][-1]
            print(f"seed {seed}: trained in {trained['train_s']:.0f} s; ensemble Dice AUC {auc(c['dice']):.2f}, "
                  f"Dice@0 {c['dice'][0]:.3f}, Dice@10 {c['dice'][10]:.3f}, FPV AUC {auc(c['fpv_ml']):.1f}", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    base_rows = protocol_rows(SuvThresholdPredictor(), split_entries(datalist, args.split, args.folds), datalist.parent)
    base_pp = protocol_rows(SuvThresholdPredictor(), split_entries(datalist, args.split, args.folds), datalist.parent, pp)
    results = [summarise("ensemble", per_seed["ensemble"]), summarise("single ckpt", per_seed["single"]),
               *([summarise("ensemble raw", per_seed["ensemble raw"])] if per_seed["ensemble raw"] else []),
               summarise("suv-threshold", [curves(base_rows)]), summarise("suv-thr + pp", [curves(base_pp)])]
    if args.postprocess != "off":
        nothing = protocol_rows(NoModel(), split_entries(datalist, args.split, args.folds), datalist.parent, pp)
        results.append(summarise("no model + pp", [curves(nothing)]))
    entries = split_entries(datalist, args.split, args.folds)
    n_neg = sum(1 for e in entries if not any(r["case"] == e.get("case") and r["gt_ml"] > 0 for r in base_rows))
    print(f"\ncohort seed {args.cohort_seed} ({args.cases} cases {tuple(args.shape)}), {args.split} split: "
          f"{len(entries)} cases ({n_neg} without lesions; tracers "
          f"{sorted({str(e.get('tracer')) for e in entries})}); training {f'{np.mean(times):.0f} s' if times else 'not run (--rescore)'} per seed; "
          f"overrides {overrides or 'none'}; models post-processed: {args.postprocess}")
    print_table(results, len(args.seeds))
    by_name = {r["name"]: r for r in results}
    crit = criteria(by_name["ensemble"], by_name["suv-threshold"])
    print("\nissue 13 criteria (ensemble vs suv-threshold): " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                                                          for k, v in crit.items()))
    crit_pp = criteria(by_name["ensemble"], by_name["suv-thr + pp"])
    print("the same against suv-threshold with the models' post-processing: "
          + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in crit_pp.items()))
    if args.json:
        args.json.write_text(json.dumps({"cohort_seed": args.cohort_seed, "split": args.split, "seeds": args.seeds,
                                         "overrides": overrides, "train_s": times, "results": results,
                                         "criteria": crit, "criteria_vs_postprocessed_baseline": crit_pp,
                                         "postprocess": args.postprocess, "per_seed": per_seed}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
