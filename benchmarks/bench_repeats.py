"""Repeat modes at equal compute: `independent`, `snapshot` and `warmstart` repeats
(YAML `training.repeats`), each training the same number of iterations per fold, scored by the
official 11-step protocol on every fold's validation cases (each fold's ensemble of its repeats,
and its last repeat alone), beside suv-threshold on the same cases.

    python benchmarks/bench_repeats.py --cohort-seed 7 --seeds 0 --folds 2

Models are scored post-processed as petclick ships them (petclick.postprocess defaults).

Per fold and mode, with R repeats and E iterations per epoch (the demo preset's values):
- independent: R repeats of iterations / R each;
- snapshot / warmstart: a first repeat of `--first` iterations, then R - 1 of (iterations - first) / (R - 1).
The cohort is the demo's (24 cases of 48x48x64, at least 8 in testing, which this never touches).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality as bq  # noqa: E402  (the shared train/evaluate helpers)


def mode_overrides(mode: str, iterations: int, first: int, repeats: int, per_epoch: int) -> dict:
    """training#... overrides that give `mode` `iterations` per fold."""
    if mode == "independent":
        epochs = max(1, round(iterations / repeats / per_epoch))
        return {"training#repeats": mode, "training#num_epochs": epochs, "training#cycle_epochs": None}
    rest = max(1, round((iterations - first) / (repeats - 1) / per_epoch))
    return {"training#repeats": mode, "training#num_epochs": max(1, round(first / per_epoch)),
            "training#cycle_epochs": rest}


def main(argv: list[str] | None = None) -> int:
    from petclick.core.yamlio import read_yaml
    from petclick.inference.predictors import SuvThresholdPredictor
    from petclick.postprocess import make_config
    from petclick.workflows.demo import DEMO_COHORT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cohort-seed", type=int, default=DEMO_COHORT["seed"])
    ap.add_argument("--modes", nargs="+", default=["independent", "snapshot", "warmstart"])
    ap.add_argument("--iterations", type=int, default=816, help="training iterations per fold, every mode "
                    "(default: the demo preset's 720 + 3 x 32)")
    ap.add_argument("--first", type=int, default=720, help="iterations of the first repeat (snapshot, warmstart)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--set", nargs="*", default=[], help="further overrides section#key=value")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    data = Path(tempfile.gettempdir()) / f"petclick_quality_{args.cohort_seed}_{DEMO_COHORT['cases']}"
    datalist = bq.cohort(data, DEMO_COHORT["cases"], args.cohort_seed, DEMO_COHORT["shape"],
                         DEMO_COHORT["min_test_cases"])
    user = {k: v for k, v in read_yaml(bq.INPUT_TEMPLATE).items()
            if k in ("preset", "num_repeats", "clicks", "overrides", "algo_overrides")}
    probe = bq.fold_config(datalist, 0, data / "probe", bq._set(args.set), user)
    repeats = int(probe["num_repeats"])
    per_epoch = int(probe["training"]["num_iterations_per_epoch"])
    results, rows_json = [], {}
    for mode in args.modes:
        over = {**bq._set(args.set), **mode_overrides(mode, args.iterations, args.first, repeats, per_epoch)}
        per_seed = {"ensemble": [], "single": []}
        times = []
        for seed in args.seeds:
            work = Path(tempfile.mkdtemp(prefix=f"bench_repeats_{mode}_"))
            try:
                trained = bq.train_all(datalist, work, seed, over, user, args.folds)
                rows = bq.evaluate(trained["checkpoints"], datalist, "validation", make_config())
            finally:
                shutil.rmtree(work, ignore_errors=True)
            times.append(trained["train_s"])
            for k in per_seed:
                per_seed[k].append(bq.curves(rows[k]))
        print(f"{mode}: {over} -> {np.mean(times):.0f} s of training per seed", flush=True)
        results += [bq.summarise(f"{mode}", per_seed["ensemble"]), bq.summarise(f"{mode} 1 ckpt", per_seed["single"])]
        rows_json[mode] = {"overrides": over, "train_s": times, "per_seed": per_seed}
    base = bq.protocol_rows(SuvThresholdPredictor(), bq.split_entries(datalist, "validation", args.folds), datalist.parent)
    results.append(bq.summarise("suv-threshold", [bq.curves(base)]))
    print(f"\ncohort seed {args.cohort_seed}, validation cases of folds 0..{args.folds - 1}, "
          f"{args.iterations} iterations per fold in every mode")
    bq.print_table(results, len(args.seeds))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "modes": rows_json}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
