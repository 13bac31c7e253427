"""The autoPET-winner techniques of issue 18, each on and off at the same compute, on phantoms.

    python benchmarks/bench_techniques.py --folds 1 --seeds 0                    # baseline vs organ head
    python benchmarks/bench_techniques.py --score-cohorts 21 99 --seeds 0 1 --variants baseline "organ head"
    python benchmarks/bench_techniques.py --folds 1 --seeds 0 --variants baseline "all 10 clicks" "by click count"

Every variant trains the demo recipe (the config fill_template_config writes for the `demo` preset,
plus the variant's overrides and `--set`) on the demo cohort (seed 7) with the same iterations,
folds and training seeds, and is scored on cohorts the recipe never saw (`--score-cohorts`, default
21 and 99: every case of each, or its testing split with `--score-split testing`; one table per
cohort, the same trained models) through the official 11-step protocol, beside suv-threshold on
the same cases. The ensemble of each variant's checkpoints
(folds x repeats) is scored twice: raw (prob >= 0.5) and post-processed as petclick ships it.
Printed: Dice AUC, Dice at 0 and 10 clicks, FPV at step 0 (organ supervision should lower it),
FPV AUC and FNV AUC, means over the training seeds.

A variant is a Variant: the model sets it trains (name -> overrides) and how the scored predictor
is made from their checkpoints (default: the ensemble of the one set `main`). A technique that needs
two model sets (issue 18's model choice by click count: one set trained on 0-10 random clicks, one
on all 10, picked by the step's click count) or a trained classifier (the tracer classifier) is one
more entry in VARIANTS with its own `trainings` and `predictor`; the compute of its sets is its own
to balance (e.g. half the iterations each).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality as bq  # noqa: E402  (the shared train/evaluate helpers)

#: The phantom organs with physiological uptake that a lesion model confuses with lesions (FDG:
#: brain, myocardium, kidneys, bladder, liver, spleen; PSMA also salivary glands and small bowel).
ORGAN_HEAD = {"labels": ["brain", "myocardium", "kidneys", "bladder", "liver", "spleen", "salivary_glands",
                         "small_bowel"], "weight": 1.0}


def ensemble_of(model_set: str = "main") -> Callable[[Mapping[str, list[Path]]], Any]:
    """Predictor factory: the ensemble of every checkpoint of `model_set`."""
    def make(checkpoints: Mapping[str, list[Path]]):
        from petclick.inference.predictor import EnsemblePredictor

        return EnsemblePredictor(checkpoints[model_set])
    return make


@dataclass(frozen=True)
class Variant:
    """One row pair of the table: the model sets it trains ({name: section#key overrides}) and how
    its scored predictor is made from their checkpoints ({name: [model.pt, ...]})."""

    name: str
    trainings: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"main": {}})
    predictor: Callable[[Mapping[str, list[Path]]], Any] = field(default=ensemble_of("main"))


def by_click_count(few: str, many: str, split: int = 5) -> Callable[[Mapping[str, list[Path]]], Any]:
    """Predictor factory: model set `few` for steps 0..split, `many` for split+1..10 (issue 18's
    model choice by click count, through get_predictor's step mapping)."""
    def make(checkpoints: Mapping[str, list[Path]]):
        from petclick.inference.predictors import get_predictor

        return get_predictor({f"0-{split}": [str(p) for p in checkpoints[few]],
                              f"{split + 1}-10": [str(p) for p in checkpoints[many]]})
    return make


#: All 10 clicks of each kind on every training patch (BIRTH's model for steps 6-10).
ALL_CLICKS = {"clicks#curriculum#count": "full"}

#: About half the demo recipe's iterations per fold (352 + 3 x 16 = 400 instead of 720 + 3 x 32 = 816): two such sets
#: cost one baseline.
HALF = {"training#num_epochs": 22, "training#cycle_epochs": 1}

#: The variants by name (`--variants`). "by click count" trains two sets (twice a baseline's
#: compute: the recipe's log-count curriculum for steps 0-5 and all 10 clicks for steps 6-10);
#: "by click count, same compute" the same two at half the iterations each; "all 10 clicks" is the
#: second set alone, to tell which half of it matters.
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("baseline"),
    Variant("organ head", {"main": {"network#organ_head": ORGAN_HEAD}}),
    Variant("all 10 clicks", {"main": ALL_CLICKS}),
    Variant("by click count", {"few": {}, "all10": ALL_CLICKS}, by_click_count("few", "all10")),
    Variant("by click count, same compute", {"few": HALF, "all10": {**ALL_CLICKS, **HALF}},
            by_click_count("few", "all10")),
)}


def score_entries(datalist: Path, split: str) -> list[dict]:
    """The scored cases of the unseen cohort: every case (`all`) or its testing split."""
    from petclick.io.datalist import load_datalist

    data = load_datalist(datalist)
    return data["testing"] if split == "testing" else data["training"] + data["testing"]


def train_variant(variant: Variant, datalist: Path, work: Path, seed: int, common: dict, user: dict,
                  folds: int) -> tuple[dict[str, list[Path]], float]:
    """Train every model set of `variant` for training seed `seed`: ({set: checkpoints}, seconds)."""
    checkpoints, t0 = {}, time.time()
    for name, overrides in variant.trainings.items():
        trained = bq.train_all(datalist, work / name, seed, {**common, **dict(overrides)}, user, folds)
        checkpoints[name] = [p for f in sorted(trained["checkpoints"]) for p in trained["checkpoints"][f]]
    return checkpoints, time.time() - t0


def row(name: str, per_seed: list[dict[str, list[float]]]) -> dict[str, Any]:
    """bench_quality's summary of one predictor plus FPV at step 0."""
    res = bq.summarise(name, per_seed)
    res["fpv0"] = float(np.mean([c["fpv_ml"][0] for c in per_seed]))
    return res


def print_table(results: list[dict[str, Any]], n_seeds: int) -> None:
    print(f"\n{'predictor':>24} {'Dice AUC':>9} {'Dice@0':>7} {'Dice@10':>8} {'FPV@0 mL':>9} {'FPV AUC mL':>11} "
          f"{'FNV AUC mL':>11}   (means over {n_seeds} training seed(s))")
    for r in results:
        print(f"{r['name']:>24} {r['dice_auc']['mean']:9.2f} {r['dice']['mean'][0]:7.3f} {r['dice']['mean'][10]:8.3f} "
              f"{r['fpv0']:9.1f} {r['fpv_ml_auc']['mean']:11.1f} {r['fnv_ml_auc']['mean']:11.1f}")


def main(argv: list[str] | None = None) -> int:
    from petclick.config.packaged import INPUT_TEMPLATE
    from petclick.core.yamlio import read_yaml
    from petclick.inference.predictors import SuvThresholdPredictor
    from petclick.postprocess import RULES, make_config
    from petclick.workflows.demo import DEMO_COHORT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--score-cohorts", type=int, nargs="+", default=[21, 99],
                    help="seeds of the unseen cohorts scored (not the demo's 7)")
    ap.add_argument("--score-split", choices=("all", "testing"), default="all")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (training.seed)")
    ap.add_argument("--folds", type=int, default=5, help="folds trained (0..n-1), each with the recipe's repeats")
    ap.add_argument("--set", nargs="*", default=[], help="overrides section#key=value for every variant")
    ap.add_argument("--threads", type=int, help="torch threads (default: the recipe's training.num_threads)")
    ap.add_argument("--work", type=Path, help="keep the trained models here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="write every curve here")
    args = ap.parse_args(argv)
    if DEMO_COHORT["seed"] in args.score_cohorts:
        ap.error(f"--score-cohorts: {DEMO_COHORT['seed']} is the training cohort: score on ones the recipe never saw")
    tmp = Path(tempfile.gettempdir())
    shape, cases = DEMO_COHORT["shape"], DEMO_COHORT["cases"]
    train_list = bq.cohort(tmp / f"petclick_quality_{DEMO_COHORT['seed']}_{cases}", cases, DEMO_COHORT["seed"],
                           shape, DEMO_COHORT["min_test_cases"])
    scored = {c: bq.cohort(tmp / f"petclick_quality_{c}_{cases}", cases, c, shape, DEMO_COHORT["min_test_cases"])
              for c in args.score_cohorts}
    entries = {c: score_entries(path, args.score_split) for c, path in scored.items()}
    user = {k: v for k, v in read_yaml(INPUT_TEMPLATE).items()
            if k in ("preset", "num_repeats", "clicks", "overrides", "algo_overrides")}
    common = bq._set(args.set)
    if args.threads:
        common["training#num_threads"] = args.threads
    pp = make_config()
    raw = make_config(None, **{r: False for r in RULES})
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_techniques_"))
    # curves[cohort][variant][raw|pp]: one entry per training seed
    curves = {c: {name: {"raw": [], "pp": []} for name in args.variants} for c in scored}
    record: dict[str, Any] = {}
    try:
        for name in args.variants:
            variant = VARIANTS[name]
            times = []
            for seed in args.seeds:
                seed_dir = work / name.replace(" ", "_") / f"seed{seed}"
                shutil.rmtree(seed_dir, ignore_errors=True)
                checkpoints, seconds = train_variant(variant, train_list, seed_dir, seed, common, user, args.folds)
                times.append(seconds)
                for c, path in scored.items():
                    for kind, config in (("raw", raw), ("pp", pp)):
                        rows = bq.protocol_rows(variant.predictor(checkpoints), entries[c], path.parent, config)
                        curves[c][name][kind].append(bq.curves(rows))
                    got = curves[c][name]["raw"][-1]
                    print(f"{name} seed {seed}: trained in {seconds:.0f} s; cohort {c}: raw Dice AUC "
                          f"{bq.auc(got['dice']):.2f}, FPV@0 {got['fpv_ml'][0]:.1f} mL", flush=True)
            record[name] = {"trainings": {k: dict(v) for k, v in variant.trainings.items()}, "train_s": times}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    tables = {}
    for c, path in scored.items():
        results = [row(f"{name} {kind if kind == 'raw' else '+ pp'}", curves[c][name][kind])
                   for name in args.variants for kind in ("raw", "pp")]
        base = bq.protocol_rows(SuvThresholdPredictor(), entries[c], path.parent)
        results.append(row("suv-threshold", [bq.curves(base)]))
        n_neg = len({r["case"] for r in base if r["gt_ml"] == 0})
        print(f"\n=== trained on cohort {DEMO_COHORT['seed']} (folds 0..{args.folds - 1}, seeds {args.seeds}, "
              f"overrides {common or 'none'}); scored on cohort {c}, {args.score_split} cases ({len(entries[c])}, "
              f"{n_neg} without lesions); training s per seed: "
              + ", ".join(f"{k} {np.mean(v['train_s']):.0f}" for k, v in record.items()))
        for kind in ("dice", "fpv_ml"):
            print(f"\n{kind} at steps 0..10")
            for r in results:
                print(f"  {r['name']:>22} " + " ".join(f"{v:7.3f}" if kind == "dice" else f"{v:7.1f}"
                                                        for v in r[kind]["mean"]))
        print_table(results, len(args.seeds))
        tables[c] = results
    if args.json:
        args.json.write_text(json.dumps({"score_cohorts": args.score_cohorts, "split": args.score_split,
                                         "seeds": args.seeds, "folds": args.folds, "common": common,
                                         "tables": tables, "variants": record, "curves": curves},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
