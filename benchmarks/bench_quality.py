"""Quality of a training recipe through the official 11-step protocol: what the network adds to
the shipped masks, against no model at all and against the `suv-threshold` baseline.

    python benchmarks/bench_quality.py --scale demo --cohort-seed 7                    # the demo cohort's testing split
    python benchmarks/bench_quality.py --scale demo --cohort-seed 7 --test-seeds 101 102 --seeds 0 1 2
    python benchmarks/bench_quality.py --scale mid --cohort-seed 2026 --split validation --seeds 0
    python benchmarks/bench_quality.py --scale mid --cohort-seed 2026 --test-seeds 101 102 103 --seeds 0

Scales (SCALES): `demo` is the demo's own cohort settings (48x48x64, 24 cases) and recipe
(petclick's input template, preset `demo`: 5 folds, 4 snapshot checkpoints each); `mid` resolves
lesions (160x160x200, 5.1 x 5.1 x 4.9 mm; 80 cases, 64 of them trained on) and trains the recipe of
`benchmarks/quality_mid.yaml` on folds 1-4 (one snapshot run, 4 checkpoints), sized to run on this
project's 2-core CPU in about an hour per training seed.

For each training seed it trains the folds as a bundle's train.py does (petclick's loop, the config
fill_template_config writes for the input file's keys plus `--set` overrides), then scores:
- `--split validation` (choose recipes here, never on testing cases): each trained fold's models on
  that fold's validation cases (mid: fold 0, whose cases no model trained on);
- `--split testing`: the cohort's own testing split (demo);
- `--test-seeds S...`: whole cohorts of other seeds, generated with the scale's settings
  (`--test-cases` each), every case scored: what an unseen cohort gives.

Rows, all from one run of each predictor through the steps (the probability is computed once per
step and both masks are taken from it):
- `ensemble + pp`: every checkpoint's mean, post-processed as `petclick predict`, `gc` and the demo
  ship masks (petclick.postprocess defaults: click consistency; or `--postprocess FILE`);
- `ensemble raw`: the same probability at >= 0.5, no post-processing: the network alone;
- `single + pp`: one checkpoint alone (the first fold's last), post-processed;
- `rule alone`: a predictor that finds nothing, post-processed: what the click rule alone makes;
- `suv-thr + pp`: the `suv-threshold` baseline, post-processed the same way.
Columns: Dice AUC (11 steps, trapezoid), Dice at 0 and 10 clicks (cases with lesions), FPV AUC,
and FPV at step 0 on the lesion-free cases. Then the issue-26 criteria.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from petclick.config.packaged import BUNDLES, INPUT_TEMPLATE

METRICS = ("dice", "fpv_ml", "fnv_ml")
STEPS = 11
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Scale:
    """Cohort settings, the input file of the recipe and the folds trained."""

    shape: tuple[int, int, int]
    cases: int
    min_test_cases: int | None
    input: Path
    folds: tuple[int, ...]
    test_cases: int
    notes: str = ""
    val_folds: tuple[int, ...] = field(default=())


SCALES: dict[str, Scale] = {
    "demo": Scale((48, 48, 64), 24, 8, INPUT_TEMPLATE, (0, 1, 2, 3, 4), 24,
                  "the demo cohort's settings and recipe"),
    "mid": Scale((160, 160, 200), 80, 1, HERE / "quality_mid.yaml", (0,), 12,
                 "lesions resolved at 5.1 x 5.1 x 4.9 mm; one fold trained, fold 0 validates"),
}


def cohort(data: Path, cases: int, seed: int, shape, min_test_cases: int | None) -> Path:
    from petclick.workflows.demo import ensure_cohort

    return ensure_cohort(data, cases, seed, shape, min_test_cases)


def fold_config(datalist: Path, fold: int, ckpt: Path, overrides: dict[str, Any], user: dict[str, Any]) -> dict:
    """The resolved bundle config of `fold` for the input file's keys in `user` plus `overrides`."""
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


def train_all(datalist: Path, work: Path, seed: int, overrides: dict, user: dict, folds) -> dict[str, Any]:
    """Train the folds' repeats (training seed `seed`); returns {fold: [model.pt paths]} and timing."""
    from petclick.training.loop import train_fold

    out, t0 = {}, time.time()
    for fold in folds:
        ckpt = work / f"segresnet_{fold}" / "model"
        cfg = fold_config(datalist, fold, ckpt, {**overrides, "training#seed": seed}, user)
        train_fold(cfg)
        out[fold] = sorted(ckpt.glob("repeat*/model.pt"), key=lambda p: int(p.parent.name[6:]))
        print(f"  seed {seed} fold {fold}: {len(out[fold])} checkpoints ({time.time() - t0:.0f} s)", flush=True)
    return {"checkpoints": out, "train_s": time.time() - t0}


def kept_checkpoints(seed_dir: Path, folds) -> dict[str, Any]:
    """The checkpoints train_all wrote under `seed_dir` ({fold: [model.pt by repeat]})."""
    out = {}
    for fold in folds:
        paths = sorted((seed_dir / f"segresnet_{fold}" / "model").glob("repeat*/model.pt"),
                       key=lambda p: int(p.parent.name[6:]))
        if not paths:
            raise SystemExit(f"{seed_dir / f'segresnet_{fold}'}: no checkpoints to rescore")
        out[fold] = paths
    return {"checkpoints": out, "train_s": float("nan")}


class NoModel:
    """A predictor that finds nothing (probability 0): what post-processing alone makes of the clicks."""

    name = "no model"

    def predict(self, case, clicks):
        return np.zeros(case.shape, np.float32)


def protocol_rows(predictor, entries: list[dict], dataroot: Path, variants: dict[str, dict | None]) -> dict[str, list[dict]]:
    """{variant: 11-step rows} of `predictor` on `entries`: one session per case, and each step's
    probability turned into every variant's mask (a post-processing config, or None: prob >= 0.5)."""
    from petclick.inference.session import InteractiveSession
    from petclick.inference.steps import official_clicks, run_steps
    from petclick.io.clickfile import read_clicks
    from petclick.io.datalist import entry_case_id, resolve_entry
    from petclick.io.images import load_case
    from petclick.metrics.lesion import LesionScorer
    from petclick.metrics.protocol import protocol_row
    from petclick.postprocess import postprocess

    rows: dict[str, list[dict]] = {name: [] for name in variants}
    for e in entries:
        r = resolve_entry(e, dataroot)
        case = load_case(r["image"], r["pet"], r["label"])
        cid, tracer = entry_case_id(e), str(e.get("tracer", "unknown"))
        scorer = LesionScorer(case.label.array != 0, case.pet.spacing)
        session = InteractiveSession(predictor, case, source=cid)
        for step, pred in run_steps(session, range(STEPS), official_clicks(read_clicks(r["clicks"]))):
            for name, pp in variants.items():
                mask = pred.prob >= 0.5 if pp is None else postprocess(pred.prob, case, pred.clicks, tracer, pp)
                rows[name].append(protocol_row(cid, tracer, int(step), scorer(np.asarray(mask, bool)), pred.clicks))
    return rows


def curves(rows: list[dict]) -> dict[str, list[float]]:
    """Cohort-mean curve per metric over the 11 steps (Dice over cases with lesions), plus the mean FPV
    at each step over the lesion-free cases (`fpv_neg`)."""
    out = {}
    for m in METRICS:
        out[m] = [float(np.nanmean([r[m] for r in rows if r["step"] == k] or [np.nan])) for k in range(STEPS)]
    neg = [r for r in rows if r.get("gt_ml", 1) == 0]
    out["fpv_neg"] = [float(np.mean([r["fpv_ml"] for r in neg if r["step"] == k])) if neg else float("nan")
                      for k in range(STEPS)]
    return out


def auc(curve: list[float]) -> float:
    from petclick.metrics.aggregate import auc_trapezoid

    return auc_trapezoid(curve)


def summarise(name: str, per_seed: list[dict[str, list[float]]]) -> dict[str, Any]:
    """Mean curves and spread (min, max over seeds), AUC and final values."""
    res: dict[str, Any] = {"name": name}
    for m in (*METRICS, "fpv_neg"):
        arr = np.asarray([c[m] for c in per_seed], dtype=float)
        res[m] = {"mean": arr.mean(0).tolist(), "min": arr.min(0).tolist(), "max": arr.max(0).tolist()}
        aucs = [auc(c[m]) for c in per_seed]
        res[f"{m}_auc"] = {"mean": float(np.mean(aucs)), "min": float(np.min(aucs)), "max": float(np.max(aucs))}
    return res


def print_table(results: list[dict[str, Any]], n_seeds: int) -> None:
    print(f"\nDice: mean over {n_seeds} training seed(s) at steps 0..10")
    for r in results:
        print(f"  {r['name']:>14} " + " ".join(f"{v:6.3f}" for v in r["dice"]["mean"]))
    print(f"\n| predictor | Dice AUC | Dice@0 | Dice@10 | FPV AUC mL | FPV@0 lesion-free mL | FNV AUC mL |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        d, f = r["dice_auc"], r["fpv_ml_auc"]
        spread = f" [{d['min']:.2f}-{d['max']:.2f}]" if n_seeds > 1 and d["max"] > d["min"] else ""
        print(f"| {r['name']} | {d['mean']:.2f}{spread} | {r['dice']['mean'][0]:.3f} | {r['dice']['mean'][10]:.3f} | "
              f"{f['mean']:.1f} | {r['fpv_neg']['mean'][0]:.1f} | {r['fnv_ml_auc']['mean']:.1f} |")


def criteria(by_name: dict[str, dict[str, Any]], scale: str) -> dict[str, bool]:
    """Issue 26's criteria: the network carries its weight (mid) / the demo's model detects (demo)."""
    prod, raw, rule, base = (by_name[k] for k in ("ensemble + pp", "ensemble raw", "rule alone", "suv-thr + pp"))
    dice0, margin = (0.4, 0.5) if scale == "mid" else (0.3, 0.3)
    return {f"dice_at_0_at_least_{dice0}": prod["dice"]["mean"][0] >= dice0,
            "raw_beats_suv_threshold_pp": raw["dice_auc"]["mean"] > base["dice_auc"]["mean"],
            f"product_beats_rule_alone_by_{margin}": prod["dice_auc"]["mean"] >= rule["dice_auc"]["mean"] + margin,
            "fpv_at_0_lesion_free_below_baseline": prod["fpv_neg"]["mean"][0] < base["fpv_neg"]["mean"][0]}


def _set(values: list[str]) -> dict[str, Any]:
    """`--set section#key=value ...` as overrides: the parser `petclick hpo --set` uses (bad items: InputError)."""
    from petclick.commands.hpo import parse_sets

    return parse_sets(values)


def score_sets(args, scale: Scale, datalist: Path) -> list[tuple[str, list[dict], Path]]:
    """(name, entries, dataroot) of every case set to score: validation folds, the testing split, other seeds."""
    from petclick.io.datalist import load_datalist

    data = load_datalist(datalist)
    sets = []
    if args.split == "validation":
        folds = set(scale.folds)
        sets.append(("validation", [e for e in data["training"] if int(e["fold"]) in folds], datalist.parent))
    elif not args.test_seeds:
        sets.append(("testing", data["testing"], datalist.parent))
    for seed in args.test_seeds or []:
        folder = args.data_root / f"petclick_quality_{seed}_{scale.test_cases}_{'x'.join(map(str, scale.shape))}"
        dl = cohort(folder, scale.test_cases, seed, scale.shape, None)
        every = load_datalist(dl)
        sets.append((f"cohort {seed}", every["training"] + every.get("testing", []), dl.parent))
    return sets


def evaluate_seed(ckpts: dict[int, list[Path]], sets, pp: dict) -> dict[str, list[dict]]:
    """Rows of the trained models: the ensemble (raw and post-processed) and the single checkpoint.
    On validation folds each fold's models score that fold's cases; elsewhere every checkpoint scores."""
    from petclick.inference.predictor import EnsemblePredictor

    rows: dict[str, list[dict]] = {"ensemble + pp": [], "ensemble raw": [], "single + pp": []}
    for name, entries, root in sets:
        if name == "validation":   # each fold's models on that fold's own validation cases
            groups = [(paths, [e for e in entries if int(e["fold"]) == fold]) for fold, paths in ckpts.items()]
        else:
            groups = [([p for f in sorted(ckpts) for p in ckpts[f]], entries)]
        for paths, group in groups:
            both = protocol_rows(EnsemblePredictor(paths), group, root, {"ensemble + pp": pp, "ensemble raw": None})
            for k, v in both.items():
                rows[k] += v
            rows["single + pp"] += protocol_rows(EnsemblePredictor([paths[-1]]), group, root, {"s": pp})["s"]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="demo")
    ap.add_argument("--cohort-seed", type=int, required=True, help="training cohort's generator seed (the demo's is 7)")
    ap.add_argument("--cases", type=int, help="training cohort size (default: the scale's)")
    ap.add_argument("--shape", type=int, nargs=3, help="phantom grid of every cohort (default: the scale's)")
    ap.add_argument("--folds", type=int, nargs="+", help="folds to train (default: the scale's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (training.seed)")
    ap.add_argument("--split", choices=("testing", "validation"), default="testing")
    ap.add_argument("--test-seeds", type=int, nargs="*", default=[], help="score whole cohorts of these seeds")
    ap.add_argument("--input", type=Path, help="input.yaml whose petclick keys to use (default: the scale's)")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides section#key=value (YAML values)")
    ap.add_argument("--data-root", type=Path, default=Path(tempfile.gettempdir()), help="where cohorts are generated")
    ap.add_argument("--work", type=Path, help="keep the trained folds here (default: a temporary folder)")
    ap.add_argument("--threads", type=int, help="torch threads (default: the recipe's training.num_threads)")
    ap.add_argument("--json", type=Path, help="write curves, AUCs and criteria here")
    ap.add_argument("--rescore", action="store_true",
                    help="score the checkpoints kept in --work by an earlier run, without training")
    ap.add_argument("--postprocess", default="default", metavar="default|FILE.yaml",
                    help="the shipped masks' post-processing (default: petclick's, as predict, gc and the demo)")
    args = ap.parse_args(argv)
    if args.rescore and args.work is None:
        ap.error("--rescore needs --work, the folder of an earlier run")
    scale = SCALES[args.scale]
    if args.cases or args.shape or args.folds:
        import dataclasses

        scale = dataclasses.replace(scale, cases=args.cases or scale.cases,
                                    shape=tuple(args.shape) if args.shape else scale.shape,
                                    folds=tuple(args.folds) if args.folds else scale.folds)
    from petclick.core.yamlio import read_yaml
    from petclick.inference.predictors import SuvThresholdPredictor
    from petclick.postprocess import make_config

    pp = make_config(None if args.postprocess == "default" else args.postprocess)
    data = args.data_root / f"petclick_quality_{args.cohort_seed}_{scale.cases}_{'x'.join(map(str, scale.shape))}"
    datalist = cohort(data, scale.cases, args.cohort_seed, scale.shape, scale.min_test_cases)
    user = {k: v for k, v in read_yaml(args.input or scale.input).items()
            if k in ("preset", "num_repeats", "clicks", "overrides", "algo_overrides")}
    overrides = _set(args.set)
    if args.threads:
        overrides["training#num_threads"] = args.threads
    sets = score_sets(args, scale, datalist)
    entries = [e for _, es, _ in sets for e in es]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_quality_"))
    per_seed: dict[str, list] = {"ensemble + pp": [], "ensemble raw": [], "single + pp": []}
    times, eval_s = [], []
    try:
        for seed in args.seeds:
            seed_dir = work / f"seed{seed}"
            if args.rescore:
                trained = kept_checkpoints(seed_dir, scale.folds)
            else:
                shutil.rmtree(seed_dir, ignore_errors=True)
                trained = train_all(datalist, seed_dir, seed, overrides, user, scale.folds)
                times.append(trained["train_s"])
            t0 = time.time()
            rows = evaluate_seed(trained["checkpoints"], sets, pp)
            eval_s.append(time.time() - t0)
            for k in per_seed:
                per_seed[k].append(curves(rows[k]))
            c = per_seed["ensemble + pp"][-1]
            print(f"seed {seed}: trained in {trained['train_s']:.0f} s, scored in {eval_s[-1]:.0f} s; ensemble + pp "
                  f"Dice AUC {auc(c['dice']):.2f}, Dice@0 {c['dice'][0]:.3f}, Dice@10 {c['dice'][10]:.3f}", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    fixed: dict[str, list[dict]] = {"suv-thr + pp": [], "rule alone": []}
    for predictor, name in ((SuvThresholdPredictor(), "suv-thr + pp"), (NoModel(), "rule alone")):
        for _, es, root in sets:
            fixed[name] += protocol_rows(predictor, es, root, {name: pp})[name]
    results = [summarise(k, v) for k, v in per_seed.items()] + [summarise(k, [curves(v)]) for k, v in fixed.items()]
    n_neg = len({r["case"] for r in fixed["rule alone"] if r["gt_ml"] == 0})
    where = ", ".join(f"{name} ({len(es)} cases)" for name, es, _ in sets)
    print(f"\nscale {args.scale} ({scale.notes}); training cohort seed {args.cohort_seed} ({scale.cases} cases "
          f"{'x'.join(map(str, scale.shape))}); scored: {where}; {len(entries)} cases, {n_neg} without lesions; "
          f"training {f'{np.mean(times) / 60:.1f} min' if times else 'not run (--rescore)'} and scoring "
          f"{np.mean(eval_s) / 60:.1f} min per seed; overrides {overrides or 'none'}")
    print_table(results, len(args.seeds))
    by_name = {r["name"]: r for r in results}
    crit = criteria(by_name, args.scale)
    print("\nissue 26 criteria: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in crit.items()))
    if args.json:
        args.json.write_text(json.dumps({"scale": args.scale, "cohort_seed": args.cohort_seed, "split": args.split,
                                         "test_seeds": args.test_seeds, "seeds": args.seeds, "overrides": overrides,
                                         "train_s": times, "eval_s": eval_s, "results": results, "criteria": crit,
                                         "postprocess": args.postprocess}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
