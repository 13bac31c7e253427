"""The interactive engine on the 11-step official protocol: naive vs exact vs local re-inference.

Held-out phantoms (`--seeds`, default one; 200x200x326, FDG), their official clicks (10 per kind),
an ensemble of N demo-preset SegResNet-DS checkpoints, at one or more ROIs. Each (ROI, phantom,
mode) runs in its own process (peak memory = that process's maximum resident set), through the
same InteractiveSession every petclick command uses. Prints, per ROI and mode, over the phantoms:
windows per pass, tiles computed over the cases and over the 10 click steps, the ratio to naive,
seconds per click step and per case, peak memory (process RSS and tile cache), the largest
difference from naive over the steps (max |dp| and the smallest Dice of the masks), and the
protocol's own score: Dice against the phantoms' labels (steps 0 and 10, the 11-step AUC) and how
far that curve lies from naive's (the mean curve's worst step; in brackets the worst phantom and
step); and where a mode's masks differ from naive's: the differing voxels' median distance to the
nearest click, and how many of naive's voxels the mode misses are lesion.
Seconds are the session's own (`Prediction.seconds`: network, blending, PET-grid mapping,
thresholding), not the protocol's scoring or the comparison.

    python benchmarks/bench_interactive.py --out /tmp/bench_interactive --checkpoints 20 \
        --rois 64x64x96 96x96x160 --local-windows 1 0.5

`--local-windows`: one local run per window size (YAML `infer.local_window`, a fraction of the ROI
per axis); smaller windows cost a fraction of a tile, so the table also gives the network voxels
computed over the click steps against naive's. `--local-updates replace delta`: one local run per
update (YAML `infer.local_update`) and window; `--local-grows`: widenings per click (YAML
`infer.local_max_grow`).

The reader's table (`--paths`): one run per named path, `MODE[-wFRACTION][-delta][-gN][-kK][-fast]`
(MODE naive, exact, local or frozen; w, delta, g: local and frozen mode's window, update and
widenings; kK: the K checkpoints chosen on the validation phantom (the training run's validation
case, seed 202) by petclick.inference.subset with `--subset-criterion` over `--subset-steps`,
written to OUT/subset_kK[_CRITERION_STEPS].json, every first-K of the order scored on that phantom
in OUT/subset_report_CRITERION_STEPS.json (the K sweep); fast: step 0 answered
from those K and refined by the whole ensemble in the background, the clicks on the whole
ensemble). Every path is compared with `--reference` (default exact: the full ensemble's exact
answer; naive gives the same masks): per path, open + step 0 seconds (fast: also when refined),
median and p95 seconds per click (steps 1-10 pooled over the phantoms), the protocol's Dice AUC
against the labels and its difference from the reference's, the largest difference of the mean
Dice-per-step curve, the worst mask Dice and max |dp| against the reference. Written to
OUT/reader_table.md.

    python benchmarks/bench_interactive.py --out /tmp/pc27b --checkpoints 20 --rois 64x64x96 \
        --seeds 101 102 103 --paths exact frozen-w0.5-delta-g0 frozen-w0.5-delta-g0-k5 exact-k5

Checkpoints: `--train-iterations K` (default 16: 2 epochs of the demo preset's 8 iterations; the
preset itself runs 4) trains each of the N repeats (own seed) with petclick's training loop on other
phantoms of the same shape (`--train-cases`, default 1, plus one that validates at the end);
`--train-iterations 0` saves randomly initialised demo networks (self-describing checkpoints)
instead. They are kept in OUT/models and reused. Masks of barely trained models are mostly
near-threshold false positives, whose chance flips dominate "Dice vs naive": train longer on more
phantoms (e.g. `--train-iterations 2400 --train-cases 6`) before reading local mode's accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

MODES = ("naive", "exact", "local", "frozen")
DEMO_NET = {"init_filters": 8, "blocks_down": [1, 1, 1], "dsdepth": 2, "norm": "INSTANCE"}


def variant_name(mode: str, local_window: float, local_update: str = "replace", local_grow: int = 3) -> str:
    """A run's name: the mode, with local mode's settings where they are not the defaults (window
    fraction 1, update replace, 3 widenings)."""
    if mode not in ("local", "frozen"):
        return mode
    return (mode + (f"-w{local_window:g}" if local_window < 1 else "")
            + ("" if local_update == "replace" else f"-{local_update}") + ("" if local_grow == 3 else f"-g{local_grow}"))


def parse_variant(name: str) -> dict:
    """A path's settings from its name: `MODE[-wFRACTION][-delta][-gN][-kK][-fast]` (MODE naive,
    exact, local or frozen; w: local window, delta: local update, g: widenings, k: the K checkpoints
    chosen on the validation phantom, fast: step 0 from them, refined by the whole ensemble)."""
    parts = name.split("-")
    if parts[0] not in MODES:
        raise SystemExit(f"unknown path {name!r}: it starts with one of {', '.join(MODES)}")
    out = {"mode": parts[0], "window": 1.0, "update": "replace", "grow": 3, "k": None, "fast": False}
    for part in parts[1:]:
        if part == "delta":
            out["update"] = "delta"
        elif part == "fast":
            out["fast"] = True
        elif part[:1] in "wgk" and part[1:]:
            key = {"w": "window", "g": "grow", "k": "k"}[part[0]]
            out[key] = float(part[1:]) if key == "window" else int(part[1:])
        else:
            raise SystemExit(f"unknown part {part!r} of path {name!r}")
    return out


def _shape(text: str) -> list[int]:
    return [int(v) for v in text.lower().split("x")]


def make_models(out: Path, n: int, shape: list[int], iterations: int, train_cases: int = 1) -> Path:
    """N demo-preset checkpoints under out/models (trained on `train_cases` phantoms, or random with
    iterations 0)."""
    models = out / "models"
    if len(list(models.rglob("model.pt"))) >= n:
        return models
    import torch

    from petclick.config.presets import get_preset
    from petclick.io.images import save_volume
    from petclick.io.clickfile import write_clicks
    from petclick.phantoms import generate_case

    cfg = get_preset("demo")
    cfg["network"]["kwargs"] = dict(DEMO_NET)
    cfg["data"]["spacing"] = None
    if iterations == 0:
        from petclick.runtime.checkpoint import save_checkpoint
        from petclick.training.loop import _build_model, describe

        cfg.update(fold=0, algo="segresnet")
        desc = describe(cfg)
        for r in range(n):
            torch.manual_seed(r)
            model = _build_model(cfg, desc)
            save_checkpoint(models / f"repeat{r}" / "model.pt", {**desc, "state_dict": model.state_dict(), "repeat": r})
        return models
    data = out / "train_data"
    entries = []
    for fold, seed in [(1, 201 + 2 * k) for k in range(train_cases)] + [(0, 202)]:
        case = f"fdg_train{seed}_01"
        ph = generate_case(case, seed, shape=tuple(shape), tracer="fdg")
        ct = save_volume(data / f"{case}_0000.nii.gz", ph.ct, ph.affine)
        pet = save_volume(data / f"{case}_0001.nii.gz", ph.pet, ph.affine)
        label = save_volume(data / f"{case}.nii.gz", ph.label, ph.affine)
        clicks = write_clicks(data / f"{case}_clicks.json", ph.clicks)
        entries.append({"image": ct.name, "pet": pet.name, "label": label.name, "clicks": clicks.name,
                        "tracer": "fdg", "fold": fold})
    (data / "datalist.json").write_text(json.dumps({"training": entries}, indent=1))
    per_epoch = int(cfg["training"]["num_iterations_per_epoch"])          # the demo preset's 8
    epochs = max(1, -(-iterations // per_epoch))
    cfg["training"].update(num_epochs=epochs, val_every=epochs)             # one validation, at the end
    cfg["clicks"]["val_steps"] = [10]
    cfg.update(datalist=str(data / "datalist.json"), dataroot=str(data), fold=0, ckpt_path=str(models),
               repeats=list(range(n)), algo="segresnet", device="cpu")
    from petclick.training.loop import train_fold

    t0 = time.time()
    train_fold(cfg)
    print(f"trained {n} checkpoints x {iterations} iterations in {time.time() - t0:.0f} s", flush=True)
    return models


def make_case(out: Path, shape: list[int], seed: int) -> Path:
    """The held-out phantom as NIfTI + clicks under out/case (kept and reused)."""
    folder = out / f"case_{'x'.join(map(str, shape))}_{seed}"
    if (folder / "clicks.json").is_file():
        return folder
    from petclick.io.clickfile import write_clicks
    from petclick.io.images import save_volume
    from petclick.phantoms import generate_case

    ph = generate_case(f"fdg_bench{seed}_01", seed, shape=tuple(shape), tracer="fdg")
    save_volume(folder / "ct.nii.gz", ph.ct, ph.affine)
    save_volume(folder / "pet.nii.gz", ph.pet, ph.affine)
    save_volume(folder / "label.nii.gz", ph.label, ph.affine)
    write_clicks(folder / "clicks.json", ph.clicks)
    return folder


def where_masks_differ(mask: np.ndarray, naive: np.ndarray, clicks, label: np.ndarray) -> dict:
    """Where a mode's mask differs from naive's (PET voxels): the median distance of the differing
    voxels to the nearest click of the step, and how many of naive's voxels the mode misses are
    lesion (label) voxels; empty when the masks agree or the step has no clicks."""
    from scipy import ndimage

    differ = mask != naive
    points = [tuple(int(v) for v in p) for p in (*clicks.tumor, *clicks.background)]
    if not differ.any() or not points:
        return {}
    no_click = np.ones(mask.shape, dtype=bool)
    for p in points:
        no_click[p] = False
    distance = ndimage.distance_transform_edt(no_click)
    missed = naive & ~mask
    return {"differ_median_click_distance": float(np.median(distance[differ])),
            "missed_voxels": int(missed.sum()), "missed_lesion_voxels": int((missed & label).sum())}


def worker(args: argparse.Namespace) -> None:
    """One (ROI, path) on one phantom: the 11-step official protocol; writes a JSON of per-step
    figures; the reference path (`--reference`, naive by default) also writes each step's
    probability, which the other paths compare with."""
    import torch

    from petclick.inference.engine import LocalSettings
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.inference.protocol import run_protocol
    from petclick.inference.session import InteractiveSession
    from petclick.inference.subset import read_subset
    from petclick.io.casefiles import load_prediction_case
    from petclick.io.clickfile import read_clicks
    from petclick.io.images import load_volume
    from petclick.runtime.checkpoint import find_checkpoints

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    v = parse_variant(args.variant)
    t_open = time.perf_counter()
    case = load_prediction_case(args.case / "ct.nii.gz", args.case / "pet.nii.gz")
    case.label = load_volume(args.case / "label.nii.gz")
    clicks = read_clicks(args.case / "clicks.json", case.shape, policy="strict", budget=10)
    ckpts = find_checkpoints(args.models)[: args.checkpoints]
    predictor = EnsemblePredictor(ckpts, roi=_shape(args.roi), sw_batch_size=args.sw_batch_size)
    subset = None
    if v["k"] is not None:
        subset = read_subset(subset_file(args.subset_dir, v["k"], args.subset_criterion, args.subset_steps))
    local = LocalSettings(window=v["window"], update=v["update"], max_grow=v["grow"])
    session = InteractiveSession(predictor, case, mode=v["mode"], tile_cache_mb=args.cache_mb, local=local,
                                 checkpoints=None if v["fast"] else subset,
                                 first="fast" if v["fast"] else "ensemble", fast_checkpoints=subset)
    open_s = time.perf_counter() - t_open
    gt = case.label.array != 0
    ref_dir = args.run / f"{args.reference}_probs"
    is_ref = args.variant == args.reference
    ref_dir.mkdir(parents=True, exist_ok=True)
    steps = []
    last = {"c": 0, "r": 0, "v": 0}
    extra: dict = {}

    def on_step(step, mask, step_clicks):
        ctr, pred = session.counters, session.last
        prob = pred.prob
        row = {"step": step, "seconds": pred.seconds, "path": pred.path,
               "tiles_computed": ctr["tiles_computed"] - last["c"], "tiles_reused": ctr["tiles_reused"] - last["r"],
               "voxels_computed": ctr["voxels_computed"] - last["v"]}
        if is_ref:
            np.save(ref_dir / f"step{step}.npy", prob)
        elif (ref_dir / f"step{step}.npy").is_file():
            ref = np.load(ref_dir / f"step{step}.npy")
            a, b = mask, ref >= 0.5
            inter, total = int(np.count_nonzero(a & b)), int(a.sum() + b.sum())
            row.update(max_dp=float(np.abs(prob - ref).max()), dice=1.0 if total == 0 else 2 * inter / total,
                       voxels_differ=int(np.count_nonzero(a != b)), **where_masks_differ(a, b, step_clicks, gt))
        if step == 0 and v["fast"]:          # the full ensemble's step 0, refined in the background
            t0 = time.perf_counter()
            session.refine()
            extra["refine_wait_s"] = time.perf_counter() - t0
        steps.append(row)
        ctr = session.counters
        last.update(c=ctr["tiles_computed"], r=ctr["tiles_reused"], v=ctr["voxels_computed"])
        print(f"  {args.variant} roi {args.roi} step {step}: {row}", flush=True)

    rows = run_protocol(session, case, clicks, mode="official", on_step=on_step)
    total_s = sum(r["seconds"] for r in steps)          # the session's own time (predict + post-processing)
    n_ckpt = len(subset) if subset is not None and not v["fast"] else len(ckpts)
    result = {"variant": args.variant, "mode": v["mode"], "local_window": v["window"], "local_update": v["update"],
              "local_grow": v["grow"], "k": v["k"], "fast": v["fast"], "roi": args.roi, "checkpoints": n_ckpt,
              "steps": steps, "open_s": open_s, "seconds_case": total_s,
              "windows_per_pass": session.engine.tiles_per_pass // max(1, n_ckpt),
              "tiles_per_pass": session.engine.tiles_per_pass, "voxels_per_pass": session.engine.voxels_per_pass,
              "counters": session.counters, "reference": args.reference,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "cache_peak_mb": 0 if session.engine.cache is None else session.engine.cache.peak_bytes / 2**20,
              "dice_vs_label": [r["dice"] for r in rows],
              "subset": None if v["k"] is None else {"criterion": args.subset_criterion, "steps": args.subset_steps},
              "threads": torch.get_num_threads(), "loadavg_end": os.getloadavg(), **extra}
    (args.run / f"{args.variant}.json").write_text(json.dumps(result, indent=1))


def _load_runs(out: Path, roi: str, seeds: list[int], modes: list[str]) -> dict[str, list[dict]]:
    """Each mode's results, one per held-out phantom that naive and the mode both finished."""
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for seed in seeds:
        run = run_dir(out, roi, seed)
        if not (run / "naive.json").is_file():
            continue
        for m in modes:
            if (run / f"{m}.json").is_file():
                runs[m].append({"seed": seed, **json.loads((run / f"{m}.json").read_text())})
    return {m: r for m, r in runs.items() if r}


def _score_gap(naive: list[dict], mode: list[dict]) -> tuple[float, float]:
    """How far the mode's protocol Dice (against the label) lies from naive's: the largest absolute
    difference of the per-step curves averaged over the phantoms, and the largest on any one
    phantom and step. Phantoms without lesions (Dice NaN) do not count."""
    by_seed = {r["seed"]: np.asarray(r["dice_vs_label"], dtype=float) for r in naive}
    diffs = np.array([np.asarray(r["dice_vs_label"], dtype=float) - by_seed[r["seed"]] for r in mode])
    if diffs.size == 0 or np.isnan(diffs).all():
        return float("nan"), float("nan")
    return float(np.nanmax(np.abs(np.nanmean(diffs, axis=0)))), float(np.nanmax(np.abs(diffs)))


def _span(values: list[int]) -> str:
    """`5` when every phantom has the same value, else `5-10`."""
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def table(out: Path, rois: list[str], modes: list[str], seeds: list[int]) -> str:
    """One row per ROI and mode, summed or pooled over the held-out phantoms that naive finished."""
    from petclick.metrics.aggregate import auc_trapezoid

    lines = ["| ROI | mode | phantoms | windows/pass | tiles computed: case (steps 1-10) | fewer than naive: case "
             "(steps 1-10) | network voxels, fewer than naive: steps 1-10 | s per click step (median) | s per case "
             "(mean) | peak RSS MB | tile cache MB | max abs dp vs naive | min Dice vs naive | Dice vs label, "
             "steps 0/10 (mean) | Dice AUC vs label (mean) | Dice vs label minus naive's: mean curve, worst step "
             "(worst phantom and step) | differing voxels: median distance to a click (median over steps) | "
             "naive's voxels missed, of them lesion (all steps) |",
             "|" + " --- |" * 18]
    for roi in rois:
        res = _load_runs(out, roi, seeds, modes)
        if "naive" not in res:
            continue

        def tiles(runs):
            t = np.array([[s["tiles_computed"] for s in r["steps"]] for r in runs])
            return int(t.sum()), int(t[:, 1:].sum())

        def voxels(runs):  # results from before the voxel counter: tiles of the ROI
            return sum(s.get("voxels_computed", s["tiles_computed"]) for r in runs for s in r["steps"][1:])

        naive = res["naive"]
        n_case, n_click = tiles(naive)
        for m, runs in res.items():
            c, k = tiles(runs)
            secs = float(np.median([s["seconds"] for r in runs for s in r["steps"][1:]]))
            dp = max((s.get("max_dp", 0.0) for r in runs for s in r["steps"]), default=0.0)
            dice = min((s.get("dice", 1.0) for r in runs for s in r["steps"]), default=1.0)
            label = np.array([r["dice_vs_label"] for r in runs], dtype=float)   # the protocol's own score
            auc = float(np.nanmean([auc_trapezoid(d) for d in label]))
            gap, worst = _score_gap(naive, runs)
            near = [st["differ_median_click_distance"] for r in runs for st in r["steps"] if "differ_median_click_distance" in st]
            missed = [(st["missed_voxels"], st["missed_lesion_voxels"]) for r in runs for st in r["steps"] if "missed_voxels" in st]
            near_text = f"{np.median(near):.1f}" if near else "-"
            missed_text = f"{sum(v for v, _ in missed)}, {sum(v for _, v in missed)}" if missed else "-"
            lines.append(
                f"| {roi} | {m} | {len(runs)} | {_span([r['windows_per_pass'] for r in runs])} | {c} ({k}) | {n_case / max(c, 1):.1f}x "
                f"({n_click / max(k, 1):.1f}x) | {voxels(naive) / max(voxels(runs), 1):.1f}x | {secs:.1f} | "
                f"{np.mean([r['seconds_case'] for r in runs]):.0f} | {max(r['peak_rss_mb'] for r in runs):.0f} | "
                f"{max(r['cache_peak_mb'] for r in runs):.1f} | "
                f"{'-' if m == 'naive' else f'{dp:.2g}'} | {'-' if m == 'naive' else f'{dice:.4f}'} | "
                f"{np.nanmean(label[:, 0]):.3f}/{np.nanmean(label[:, -1]):.3f} | {auc:.3f} | "
                f"{'-' if m == 'naive' else f'{gap:.3f} ({worst:.3f})'} | {near_text} | {missed_text} |")
    return "\n".join(lines)


def run_dir(out: Path, roi: str, seed: int) -> Path:
    """Where one ROI's runs on one held-out phantom go."""
    return out / f"run_{roi}" / f"seed{seed}"


def subset_file(out: Path, k: int, criterion: str = "mask", steps: str = "ends") -> Path:
    """OUT/subset_k<K>.json for the original choice (criterion mask, steps ends), else
    OUT/subset_k<K>_<criterion>_<steps>.json."""
    suffix = "" if (criterion, steps) == ("mask", "ends") else f"_{criterion}_{steps}"
    return out / f"subset_k{k}{suffix}.json"


def choose_subsets(out: Path, models: Path, n: int, ks: list[int], roi: str, sw_batch_size: int,
                   criterion: str = "mask", steps: str = "ends") -> None:
    """subset_file(K) for each K: the checkpoints chosen on the validation phantom (the training
    run's validation case, seed 202, never a held-out one) by petclick.inference.subset with
    `criterion` over the click states `steps`; beside them OUT/subset_report_<criterion>_<steps>.json,
    every prefix K = 1..max(ks) of the order scored on that phantom (the K sweep)."""
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.inference.subset import checkpoint_probabilities, choose_subset, prefix_report, write_subset
    from petclick.io.casefiles import load_prediction_case
    from petclick.io.clickfile import read_clicks
    from petclick.io.images import load_volume
    from petclick.runtime.checkpoint import find_checkpoints

    todo = [k for k in ks if not subset_file(out, k, criterion, steps).is_file()]
    if not todo:
        return
    data = out / "train_data"
    case = load_prediction_case(data / "fdg_train202_01_0000.nii.gz", data / "fdg_train202_01_0001.nii.gz")
    case.label = load_volume(data / "fdg_train202_01.nii.gz")
    clicks = read_clicks(data / "fdg_train202_01_clicks.json", case.shape, policy="strict", budget=10)
    predictor = EnsemblePredictor(find_checkpoints(models)[:n], roi=_shape(roi), sw_batch_size=sw_batch_size)
    t0 = time.time()
    probs = checkpoint_probabilities(predictor, [(case, clicks)], steps)
    order = choose_subset(predictor, [(case, clicks)], max(todo), criterion, steps, data=probs)
    meta = {"criterion": criterion, "steps": steps, "validation": ["fdg_train202_01"]}
    for k in todo:
        write_subset(subset_file(out, k, criterion, steps), order[:k], meta)
    report = prefix_report(probs, order)
    (out / f"subset_report_{criterion}_{steps}.json").write_text(json.dumps(report, indent=1))
    print(f"chose subsets {todo} ({criterion}, {steps}) on the validation phantom in {time.time() - t0:.0f} s", flush=True)
    for row in report:
        print("  " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)


def _click_seconds(runs: list[dict]) -> np.ndarray:
    return np.array([s["seconds"] for r in runs for s in r["steps"][1:]], dtype=float)


def reader_table(out: Path, roi: str, names: list[str], seeds: list[int], reference: str) -> str:
    """The reader's table: one row per path, pooled over the held-out phantoms that the reference
    finished: step 0 (open + predict), click latency (median, p95 over steps 1-10), the protocol's
    Dice AUC against the labels, and how far each path lies from the reference (the full
    ensemble's exact answer): Dice AUC and mean Dice per step (worst step), worst mask Dice."""
    from petclick.metrics.aggregate import auc_trapezoid

    runs: dict[str, list[dict]] = {m: [] for m in names}
    for seed in seeds:
        run = run_dir(out, roi, seed)
        if not (run / f"{reference}.json").is_file():
            continue
        for m in names:
            if (run / f"{m}.json").is_file():
                runs[m].append({"seed": seed, **json.loads((run / f"{m}.json").read_text())})
    ref = {r["seed"]: np.asarray(r["dice_vs_label"], dtype=float) for r in runs.get(reference, [])}
    lines = ["| path | checkpoints | phantoms | open + step 0, s | click median, s | click p95, s | "
             "Dice AUC vs label | AUC minus exact's | mean Dice per step minus exact's (worst step) | "
             "worst mask Dice vs exact | max abs dp vs exact |", "|" + " --- |" * 11]
    for m in names:
        rs = [r for r in runs.get(m, []) if r["seed"] in ref]
        if not rs:
            continue
        secs = _click_seconds(rs)
        step0 = np.mean([r["open_s"] + r["steps"][0]["seconds"] for r in rs])
        if any(r.get("fast") for r in rs):
            full0 = np.mean([r["open_s"] + r["steps"][0]["seconds"] + r.get("refine_wait_s", 0.0) for r in rs])
            step0_text = f"{step0:.1f} (refined {full0:.1f})"
        else:
            step0_text = f"{step0:.1f}"
        label = np.array([r["dice_vs_label"] for r in rs], dtype=float)
        aucs = np.array([auc_trapezoid(d) for d in label])
        ref_auc = np.array([auc_trapezoid(ref[r["seed"]]) for r in rs])
        curve = np.nanmean(label - np.array([ref[r["seed"]] for r in rs]), axis=0)
        is_ref = m == reference
        dice = min((s["dice"] for r in rs for s in r["steps"] if "dice" in s), default=None)
        dp = max((s["max_dp"] for r in rs for s in r["steps"] if "max_dp" in s), default=None)
        lines.append(
            f"| {m} | {rs[0]['checkpoints']} | {len(rs)} | {step0_text} | {np.median(secs):.2f} | "
            f"{np.percentile(secs, 95):.2f} | {np.nanmean(aucs):.3f} | "
            f"{'-' if is_ref else f'{np.nanmean(aucs - ref_auc):+.3f}'} | "
            f"{'-' if is_ref else f'{np.nanmax(np.abs(curve)):.3f}'} | "
            f"{'-' if is_ref or dice is None else f'{dice:.4f}'} | {'-' if is_ref or dp is None else f'{dp:.2g}'} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_interactive"))
    p.add_argument("--shape", type=_shape, default=[200, 200, 326], help="phantom shape, e.g. 200x200x326")
    p.add_argument("--seeds", type=int, nargs="+", default=[101],
                   help="seeds of the held-out phantoms (one protocol run per phantom, mode and ROI)")
    p.add_argument("--checkpoints", type=int, default=20)
    p.add_argument("--train-iterations", type=int, default=16)
    p.add_argument("--train-cases", type=int, default=1,
                   help="training phantoms (seeds 201, 203, ...; one more, seed 202, validates)")
    p.add_argument("--rois", nargs="+", default=["64x64x96", "96x96x160"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--sw-batch-size", type=int, default=1)
    p.add_argument("--cache-mb", type=float, default=4096)
    p.add_argument("--local-windows", type=float, nargs="+", default=[1.0],
                   help="local mode's window per click as fractions of the ROI (YAML infer.local_window); one "
                        "local run per value")
    p.add_argument("--local-updates", nargs="+", default=["replace"], choices=["replace", "delta"],
                   help="local mode's update (YAML infer.local_update): replace blends the crop's probabilities, "
                        "delta their change from the previous clicks; one local run per value and window")
    p.add_argument("--local-grows", type=int, nargs="+", default=[3],
                   help="local mode's widenings per click (YAML infer.local_max_grow); one local run per value")
    p.add_argument("--paths", nargs="+", default=None, metavar="PATH",
                   help="the reader's table instead: one run per path, named MODE[-wFRACTION][-delta][-gN][-kK][-fast] "
                        "(e.g. naive exact frozen-w0.5-g0 exact-k5 frozen-w0.5-g0-k5 exact-fast-k5), compared "
                        "with --reference")
    p.add_argument("--reference", default=None,
                   help="the path the others are compared with (default: naive; with --paths: exact, the full "
                        "ensemble's exact answer)")
    p.add_argument("--subset-criterion", default="mask", choices=["mask", "worst-mask", "prob"],
                   help="how the kK paths' checkpoints are chosen on the validation phantom "
                        "(petclick.inference.subset: agreement with the whole ensemble by mean mask Dice, worst mask "
                        "Dice or mean |dp|)")
    p.add_argument("--subset-steps", default="ends", choices=["ends", "protocol"],
                   help="the validation click states scored: ends (no clicks and all clicks) or protocol (every "
                        "official step's exact answer)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--subset-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--roi", help=argparse.SUPPRESS)
    p.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--case", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    models = make_models(args.out, args.checkpoints, args.shape, args.train_iterations, args.train_cases)
    cases = {seed: make_case(args.out, args.shape, seed) for seed in args.seeds}
    if args.paths:
        reference = args.reference or "exact"
        names = [reference] + [n for n in args.paths if n != reference]
        for n in names:
            parse_variant(n)
        ks = sorted({parse_variant(n)["k"] for n in names} - {None})
    else:
        reference = args.reference or "naive"
        local = [(w, u, g) for w in args.local_windows for u in args.local_updates for g in args.local_grows]
        names = ["naive"] + [variant_name(m, *v) for m in args.modes if m != "naive"
                             for v in (local if m in ("local", "frozen") else [(1.0, "replace", 3)])]
        ks = []
    for roi in args.rois:
        if ks:
            choose_subsets(args.out, models, args.checkpoints, ks, roi, args.sw_batch_size, args.subset_criterion,
                           args.subset_steps)
        for seed, case in cases.items():
            run = run_dir(args.out, roi, seed)
            run.mkdir(parents=True, exist_ok=True)
            for name in names:
                if (run / f"{name}.json").is_file():
                    continue
                cmd = [sys.executable, __file__, "--worker", "--variant", name, "--reference", reference,
                       "--roi", roi, "--run", str(run), "--case", str(case), "--models", str(models),
                       "--checkpoints", str(args.checkpoints), "--sw-batch-size", str(args.sw_batch_size),
                       "--cache-mb", str(args.cache_mb), "--subset-dir", str(args.out),
                       "--subset-criterion", args.subset_criterion, "--subset-steps", args.subset_steps]
                t0 = time.time()
                subprocess.run(cmd, check=True)
                print(f"== {roi} seed {seed} {name}: {time.time() - t0:.0f} s", flush=True)
    if args.paths:
        text = "\n\n".join(f"ROI {roi}\n\n" + reader_table(args.out, roi, names, args.seeds, reference)
                             for roi in args.rois)
        (args.out / "reader_table.md").write_text(text + "\n")
        print(f"\n{args.checkpoints} checkpoints, held-out phantoms {args.seeds} of {'x'.join(map(str, args.shape))}, "
              "11-step official protocol, against the full ensemble's exact answer\n")
        print(text)
        return
    text = table(args.out, args.rois, names, args.seeds)
    (args.out / "table.md").write_text(text + "\n")
    print(f"\n{args.checkpoints} checkpoints, held-out phantoms {args.seeds} of {'x'.join(map(str, args.shape))}, "
          "11-step official protocol\n")
    print(text)


if __name__ == "__main__":
    main()
