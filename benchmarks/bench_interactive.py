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

MODES = ("naive", "exact", "local")
DEMO_NET = {"init_filters": 8, "blocks_down": [1, 1, 1], "dsdepth": 2, "norm": "INSTANCE"}


def variant_name(mode: str, local_window: float, local_update: str = "replace", local_grow: int = 3) -> str:
    """A run's name: the mode, with local mode's settings where they are not the defaults (window
    fraction 1, update replace, 3 widenings)."""
    if mode != "local":
        return mode
    return ("local" + (f"-w{local_window:g}" if local_window < 1 else "")
            + ("" if local_update == "replace" else f"-{local_update}") + ("" if local_grow == 3 else f"-g{local_grow}"))


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
    """One (ROI, mode): the 11-step official protocol; writes a JSON of per-step figures; naive also
    writes each step's probability, which the other modes compare with."""
    import torch

    from petclick.inference.engine import LocalSettings
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.inference.protocol import run_protocol
    from petclick.inference.session import InteractiveSession
    from petclick.io.casefiles import load_prediction_case
    from petclick.io.clickfile import read_clicks
    from petclick.io.images import load_volume
    from petclick.runtime.checkpoint import find_checkpoints

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", torch.get_num_threads())))
    case = load_prediction_case(args.case / "ct.nii.gz", args.case / "pet.nii.gz")
    case.label = load_volume(args.case / "label.nii.gz")
    clicks = read_clicks(args.case / "clicks.json", case.shape, policy="strict", budget=10)
    ckpts = find_checkpoints(args.models)[: args.checkpoints]
    predictor = EnsemblePredictor(ckpts, roi=_shape(args.roi), sw_batch_size=args.sw_batch_size)
    local = LocalSettings(window=args.local_window, update=args.local_update, max_grow=args.local_grow)
    session = InteractiveSession(predictor, case, mode=args.mode, tile_cache_mb=args.cache_mb, local=local)
    gt = case.label.array != 0
    ref_dir = args.run / "naive_probs"
    ref_dir.mkdir(parents=True, exist_ok=True)
    steps = []
    last = {"c": 0, "r": 0, "v": 0}

    def on_step(step, mask, step_clicks):
        ctr, pred = session.counters, session.last
        prob = pred.prob
        row = {"step": step, "seconds": pred.seconds,
               "tiles_computed": ctr["tiles_computed"] - last["c"], "tiles_reused": ctr["tiles_reused"] - last["r"],
               "voxels_computed": ctr["voxels_computed"] - last["v"]}
        if args.mode == "naive":
            np.save(ref_dir / f"step{step}.npy", prob)
        else:
            ref = np.load(ref_dir / f"step{step}.npy")
            a, b = mask, ref >= 0.5
            inter, total = int(np.count_nonzero(a & b)), int(a.sum() + b.sum())
            row.update(max_dp=float(np.abs(prob - ref).max()), dice=1.0 if total == 0 else 2 * inter / total,
                       voxels_differ=int(np.count_nonzero(a != b)), **where_masks_differ(a, b, step_clicks, gt))
        steps.append(row)
        last.update(c=ctr["tiles_computed"], r=ctr["tiles_reused"], v=ctr["voxels_computed"])
        print(f"  {args.mode} roi {args.roi} step {step}: {row}", flush=True)

    rows = run_protocol(session, case, clicks, mode="official", on_step=on_step)
    total_s = sum(r["seconds"] for r in steps)          # the session's own time (predict + post-processing)
    result = {"mode": args.mode, "local_window": args.local_window, "local_update": args.local_update,
              "local_grow": args.local_grow, "roi": args.roi, "checkpoints": len(ckpts), "steps": steps,
              "seconds_case": total_s, "windows_per_pass": session.engine.tiles_per_pass // len(ckpts),
              "tiles_per_pass": session.engine.tiles_per_pass, "voxels_per_pass": session.engine.voxels_per_pass,
              "counters": session.counters,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "cache_peak_mb": 0 if session.engine.cache is None else session.engine.cache.peak_bytes / 2**20,
              "dice_vs_label": [r["dice"] for r in rows]}
    (args.run / f"{variant_name(args.mode, args.local_window, args.local_update, args.local_grow)}.json").write_text(json.dumps(result, indent=1))


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
    p.add_argument("--local-window", type=float, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("--local-grow", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--local-update", default="replace", help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
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
    local = [(w, u, g) for w in args.local_windows for u in args.local_updates for g in args.local_grows]
    variants = [("naive", 1.0, "replace", 3)] + [(m, *v) for m in args.modes if m != "naive"
                                                 for v in (local if m == "local" else [(1.0, "replace", 3)])]
    for roi in args.rois:
        for seed, case in cases.items():
            run = run_dir(args.out, roi, seed)
            run.mkdir(parents=True, exist_ok=True)
            for mode, window, update, grow in variants:
                name = variant_name(mode, window, update, grow)
                if (run / f"{name}.json").is_file():
                    continue
                cmd = [sys.executable, __file__, "--worker", "--mode", mode, "--roi", roi, "--run", str(run),
                       "--case", str(case), "--models", str(models), "--checkpoints", str(args.checkpoints),
                       "--sw-batch-size", str(args.sw_batch_size), "--cache-mb", str(args.cache_mb),
                       "--local-window", str(window), "--local-update", update, "--local-grow", str(grow)]
                t0 = time.time()
                subprocess.run(cmd, check=True)
                print(f"== {roi} seed {seed} {name}: {time.time() - t0:.0f} s", flush=True)
    text = table(args.out, args.rois, [variant_name(*v) for v in variants], args.seeds)
    (args.out / "table.md").write_text(text + "\n")
    print(f"\n{args.checkpoints} checkpoints, held-out phantoms {args.seeds} of {'x'.join(map(str, args.shape))}, "
          "11-step official protocol\n")
    print(text)


if __name__ == "__main__":
    main()
