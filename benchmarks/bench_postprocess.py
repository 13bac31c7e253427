"""Does each post-processing rule help? Official metrics with every rule on/off on held-out cases.

Runs the predictor (a trained ensemble: AutoRunner work_dir / bundle folders / checkpoints, or the
built-in `suv-threshold` baseline) ONCE per case and protocol step (official clicks, steps 0..10),
caches the probabilities (in memory per case, or on disk with --cache), then post-processes them
with every variant and scores each with the challenge's metrics (Dice, FPV, FNV: AUC over the 11
steps and final step). Prints one table row per variant, cohort means (NaN excluded) and the
mean post-processing time per prediction.

Variants: `none` (prob >= 0.5, no rule), `default` (DEFAULT_CONFIG: click consistency only),
`+<rule>` (default plus one rule), `+<rule>:<setting>=<v>` sweeps (--sweep), `all` (every rule).
A rule deserves to be on by default when its row beats `default` on held-out cases.

    python benchmarks/bench_postprocess.py --models work_dir --datalist phantoms/datalist.json --split testing
    python benchmarks/bench_postprocess.py --models suv-threshold --datalist phantoms/datalist.json --json out.json
    python benchmarks/bench_postprocess.py --timing-shape 192x192x256     # speed of each rule on one phantom
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

from petclick.io.clickfile import Clicks
from petclick.io.datalist import entry_case_id, load_datalist, resolve_entry
from petclick.io.images import load_case
from petclick.metrics.aggregate import auc_trapezoid
from petclick.metrics.lesion import LesionScorer
from petclick.postprocess import RULES, make_config, postprocess, resolve_tracer
from petclick.io.clickfile import Clicks, read_clicks
from petclick.inference.predictors import get_predictor
from petclick.workflows.predict.cases import tracer_from_id

STEPS = tuple(range(11))
SWEEPS = {
    "min_volume": [("min_ml", v) for v in (0.1, 0.5, 1.0, 2.0)],
    "suv_filter": [("suv_min", {"fdg": v, "psma": v * 2 / 3}) for v in (1.5, 2.5, 3.5)],
    "merge": [("distance_mm", v) for v in (3.0, 5.0, 10.0)],
    "fn_recovery": [("low", v) for v in (0.1, 0.2, 0.3)],
}


def variants(sweep: bool) -> dict[str, dict]:
    """Name -> full post-processing config of every variant benchmarked."""
    off = make_config(None, **{r: False for r in RULES})
    out = {"none": off, "default": make_config()}
    for rule in RULES:
        if rule == "click_consistency":
            continue
        out[f"+{rule}"] = make_config(None, **{rule: True})
        if sweep:
            for key, value in SWEEPS.get(rule, []):
                cfg = make_config(None, **{rule: True})
                cfg[rule][key] = copy.deepcopy(value)
                shown = value if not isinstance(value, dict) else value["fdg"]
                out[f"+{rule}:{key}={shown}"] = cfg
    out["all"] = make_config(None, **{r: True for r in RULES})
    return out


def cases_of(datalist: Path, split: str, fold: int | None, dataroot: Path | None, limit: int | None) -> list[dict]:
    data = load_datalist(datalist)
    root = dataroot or datalist.parent
    entries = [resolve_entry(e, root) | {"case": entry_case_id(e)} for e in data.get(split, [])
               if fold is None or e.get("fold") == fold]
    entries = [e for e in entries if "label" in e]
    if not entries:
        sys.exit(f"{datalist}: no labelled cases in split {split!r}" + ("" if fold is None else f" fold {fold}"))
    return entries[:limit] if limit else entries


def probabilities(predictor, case, clicks: Clicks, cache: Path | None, case_id: str) -> tuple[list[np.ndarray], float]:
    """Probability per step (steps with the same clicks share one prediction); seconds spent predicting."""
    path = None if cache is None else cache / f"{case_id}.npz"
    if path is not None and path.is_file():
        data = np.load(path)
        return [data[f"step{k}"].astype(np.float32) for k in STEPS], 0.0
    t0, probs, prev = time.perf_counter(), [], None
    for k in STEPS:
        cur = clicks.first(k)
        key = (tuple(cur.tumor), tuple(cur.background))
        probs.append(probs[-1] if key == prev else np.asarray(predictor.predict(case, cur), np.float32))
        prev = key
    seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{f"step{k}": p.astype(np.float16) for k, p in zip(STEPS, probs)})
    return probs, seconds


def timing(shape: tuple[int, int, int], repeats: int = 3) -> int:
    """Milliseconds of each rule alone on one FDG phantom, with a soft probability made from its SUV
    (sigmoid((SUV - 2.5) / 0.5): many components, sub-threshold halos) and 5 + 5 clicks."""
    from petclick.io.images import CaseVolumes, Volume
    from petclick.phantoms import generate_case
    c = generate_case("fdg_timing_1", 11, shape=shape, tracer="fdg", clicks=False)
    case = CaseVolumes(Volume(c.ct, c.affine), Volume(c.pet, c.affine))
    prob = (1.0 / (1.0 + np.exp(-(c.pet - 2.5) / 0.5))).astype(np.float32)
    lesion = np.argwhere(c.label)
    hot_bg = np.argwhere((c.pet >= 2.5) & (c.label == 0))
    rng = np.random.default_rng(0)
    pick = lambda a: [tuple(int(v) for v in a[i]) for i in rng.choice(len(a), min(5, len(a)), replace=False)] if len(a) else []  # noqa: E731
    clicks = Clicks(pick(lesion), pick(hot_bg))
    off = make_config(None, **{r: False for r in RULES})
    rows = [("threshold only", off)] + [(rule, make_config(off, **{rule: True})) for rule in RULES]
    rows.append(("all rules", make_config(None, **{r: True for r in RULES})))
    print(f"phantom {shape} ({int(np.prod(shape)) / 1e6:.1f} M voxels), {int((prob >= 0.5).sum())} voxels >= 0.5, "
          f"{len(clicks.tumor)} tumour + {len(clicks.background)} background clicks; best of {repeats}\n")
    print("| rule | ms |\n|---|---|")
    for name, cfg in rows:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            postprocess(prob, case, clicks, "fdg", cfg)
            best = min(best, time.perf_counter() - t0)
        print(f"| {name} | {1000 * best:.0f} |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timing-shape", default=None, help="only time each rule on one phantom of this shape (XxYxZ)")
    ap.add_argument("--models", nargs="+", help="model paths or 'suv-threshold'")
    ap.add_argument("--datalist", type=Path)
    ap.add_argument("--split", default="testing", help="held-out split (default testing)")
    ap.add_argument("--fold", type=int, default=None, help="only this fold (e.g. --split training --fold 0)")
    ap.add_argument("--dataroot", type=Path, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--limit", type=int, default=None, help="first N cases only")
    ap.add_argument("--cache", type=Path, default=None, help="folder for cached probabilities (float16 .npz)")
    ap.add_argument("--sweep", action="store_true", help="also sweep each rule's main setting")
    ap.add_argument("--json", type=Path, default=None, help="write per-variant results here")
    args = ap.parse_args(argv)
    if args.timing_shape:
        return timing(tuple(int(v) for v in args.timing_shape.lower().split("x")))
    if not args.models or not args.datalist:
        ap.error("--models and --datalist are needed (or --timing-shape)")

    entries = cases_of(args.datalist, args.split, args.fold, args.dataroot, args.limit)
    predictor = get_predictor(args.models, device=args.device)
    configs = variants(args.sweep)
    per_case: dict[str, list[dict]] = {v: [] for v in configs}
    pp_seconds = {v: 0.0 for v in configs}
    n_calls, predict_s = 0, 0.0
    for n, e in enumerate(entries):
        case = load_case(e["image"], e["pet"], e["label"])
        clicks = read_clicks(e["clicks"], case.shape) if e.get("clicks") else Clicks()
        tracer = e.get("tracer") or tracer_from_id(e["case"])
        tracer = resolve_tracer(tracer, case)
        probs, secs = probabilities(predictor, case, clicks, args.cache, e["case"])
        predict_s += secs
        score = LesionScorer(case.label.array != 0, case.pet.spacing)
        for name, cfg in configs.items():
            curves = {"dice": [], "fpv_ml": [], "fnv_ml": []}
            for k, prob in zip(STEPS, probs):
                t0 = time.perf_counter()
                mask = postprocess(prob, case, clicks.first(k), tracer, cfg)
                pp_seconds[name] += time.perf_counter() - t0
                m = score(mask)
                for key in curves:
                    curves[key].append(m[key])
            per_case[name].append({"case": e["case"], "tracer": tracer,
                                   **{f"{key}_auc": auc_trapezoid(v) for key, v in curves.items()},
                                   **{f"{key}_final": float(v[-1]) for key, v in curves.items()}})
        n_calls += len(STEPS)
        print(f"[{n + 1}/{len(entries)}] {e['case']} ({tracer}): predicted in {secs:.1f} s", file=sys.stderr)

    def mean(rows, key):
        v = np.asarray([r[key] for r in rows], float)
        v = v[~np.isnan(v)]
        return (float(v.mean()) if v.size else float("nan")), int(v.size)

    cols = ["dice_auc", "fpv_ml_auc", "fnv_ml_auc", "dice_final", "fpv_ml_final", "fnv_ml_final"]
    results = {}
    print(f"\npredictor {getattr(predictor, 'name', args.models)}; {len(entries)} case(s) of {args.datalist} "
          f"split {args.split}; steps 0..10; prediction {predict_s:.1f} s total (cached once, shared by all variants)")
    print("Dice: higher is better; FPV/FNV (mL): lower is better; AUC = trapezoid over 11 steps. NaN-excluded means "
          f"(Dice/FNV over n positive cases).\n")
    header = "| variant | " + " | ".join(cols) + " | ms/prediction |"
    print(header)
    print("|" + "---|" * (len(cols) + 2))
    for name in configs:
        row = {c: mean(per_case[name], c) for c in cols}
        ms = 1000 * pp_seconds[name] / max(n_calls, 1)
        results[name] = {c: row[c][0] for c in cols} | {"n": {c: row[c][1] for c in cols}, "ms_per_prediction": ms}
        print(f"| {name} | " + " | ".join(f"{row[c][0]:.3f}" for c in cols) + f" | {ms:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"variants": results, "configs": configs, "cases": per_case}, indent=1,
                                        default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
