"""A full-scale dry run: full-size phantoms of the real set's shapes and spacings through the `autopet`
preset and MONAI's AutoRunner, with a tiny network, measuring what the data path costs.

    python benchmarks/bench_scale.py --out /tmp/scale            # 5 cases: 2x 400x400x326, 2x 168x168 at 4 mm, 1x 400x400x600
    python benchmarks/bench_scale.py --out /tmp/scale --long 963 # the longest real study

Stages:
1. phantoms: `--cases` cases cycling over the grids (400x400x326 at 2.04x2.04x3 mm; 168x168x326 at
   4.07x4.07x3 mm; 400x400x`--long` at 2.04x2.04x2 mm), in 2 folds, with their click files;
2. cache (in this process, fold 0's training cases): the run plan's cache (petclick.training.plan) against
   what the cache holds (bytes of its tensors and RSS growth per case); the disk cache's bytes per case
   (MONAI PersistentDataset); data time per iteration (the loader alone, `data.num_workers` workers);
3. AutoRunner (analysis, bundles, training of 2 folds, `--iterations` iterations, one validation each;
   no ensemble), the process tree's peak PSS sampled (and the training log line it came after), each
   fold's validation time per case from its progress.yaml, against the larger of the two folds' planned
   peaks (petclick.training.plan: caches, process, the larger of filling the cache and workers + validation);
   the peak of preprocessing one case of each grid in one thread (a fresh process, RSS sampled every 5 ms)
   against the plan's per-case model (petclick.training.plan.preprocess_bytes);
4. projections to 1,611 studies on 1 and 8 GPUs (petclick.training.plan.make_plan at the recorded H100
   step times, the measured bytes per case scaling the plan's model).

Deviations from the preset, all printed: `init_filters` 4 (the data path, caches, validation and memory
are what is measured), a smaller ROI (`--roi`, default 96x96x128: a 192x192x384 CPU step of even a tiny
network takes minutes) and inference overlap `--overlap` (default 0.25) so that validation fits this CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

GRIDS = [((400, 400, 326), (2.04, 2.04, 3.0)), ((168, 168, 326), (4.07, 4.07, 3.0))]
MB = 2**20


class PeakRSS(threading.Thread):
    """Samples the memory (PSS) of this process and all its children every `every_s` seconds: `.peak` bytes,
    `.when` its time, `.parts` the peak split into this process, its children (the training processes) and
    their descendants (loader workers), and `.timeline` [(time, total, this process)]."""

    def __init__(self, every_s: float = 0.25):
        super().__init__(daemon=True)
        import psutil

        self.root, self.every_s, self.peak, self.stop = psutil.Process(), every_s, 0, threading.Event()
        self.when, self.parts, self.timeline = 0.0, {}, []

    def _pss(self, p) -> int:
        import psutil

        try:
            return int(p.memory_full_info().pss)  # proportional: pages shared with forked workers count once
        except psutil.Error:
            return 0

    def run(self) -> None:
        while not self.stop.is_set():
            parent = self._pss(self.root)
            children = self.root.children()
            direct = sum(self._pss(c) for c in children)
            deeper = sum(self._pss(d) for c in children for d in _descendants(c))
            total = parent + direct + deeper
            self.timeline.append((time.time(), total, parent))
            if total > self.peak:
                self.peak, self.when = total, time.time()
                self.parts = {"this process": parent, "training process": direct, "its loader workers": deeper}
            time.sleep(self.every_s)


def _descendants(p) -> list:
    import psutil

    try:
        return p.children(recursive=True)
    except psutil.Error:
        return []


def rss(pss: bool = False) -> int:
    import psutil

    info = psutil.Process().memory_full_info() if pss else psutil.Process().memory_info()
    return int(info.pss if pss else info.rss)


def make_cohort(out: Path, cases: int, long_slices: int, seed: int) -> Path:
    """`cases` phantoms cycling over the grids (the long one once, as the 3rd case), 2 folds; one datalist."""
    from petclick.phantoms import generate_cohort

    path = out / "datalist.json"
    if path.is_file():
        return path
    grids = GRIDS + [((400, 400, long_slices), (2.04, 2.04, 2.0))]
    order = [0, 1, 2] + [n % 2 for n in range(max(0, cases - 3))]
    entries = []
    for n, g in enumerate(order[:cases]):
        shape, spacing = grids[g]
        t0 = time.time()
        sub = out / f"grid{g}_{n}"
        data = json.loads(generate_cohort(sub, cases=1, seed=seed + n, shape=shape, spacing=spacing,
                                          negatives=0.0).read_text())
        for e in data["training"] + data["testing"]:
            entries.append({k: (str(sub / v) if k in ("image", "pet", "label", "clicks") else v)
                            for k, v in e.items() if k != "organs"})
        print(f"phantom {n}: {shape} at {spacing} mm in {time.time() - t0:.1f} s", flush=True)
    for n, e in enumerate(entries):
        e["fold"] = n % 2
    path.write_text(json.dumps({"name": "scale", "num_folds": 2, "training": entries}, indent=1))
    return path


def config(args: argparse.Namespace, datalist: Path, work: Path) -> dict[str, Any]:
    """The autopet preset with the bench's deviations, as fill_template_config would resolve it."""
    from petclick.auto3dseg.algo import merged_config
    from petclick.config.packaged import BUNDLES
    from petclick.core.yamlio import read_yaml

    cfg = merged_config(read_yaml(BUNDLES / "segresnet" / "configs" / "hyper_parameters.yaml"),
                        {"preset": "autopet", "overrides": overrides(args)}, "segresnet")
    cfg["data"]["spacing"] = [2.04, 2.04, 3.0]   # the median of the cohort's spacings (what AutoRunner's analysis gives)
    cfg.update(fold=0, num_repeats=1, datalist=str(datalist), dataroot=str(datalist.parent),
               ckpt_path=str(work / "segresnet_0" / "model"))
    return cfg


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"network": {"kwargs": {"init_filters": 4}},
            "data": {"roi": list(args.roi), "num_workers": args.workers, "num_crops": 1},
            "infer": {"overlap": args.overlap},
            "training": {"num_epochs": 1, "num_iterations_per_epoch": args.iterations, "val_every": 1,
                         "warmup_epochs": 0, "amp": False}}


def _tensor_bytes(item: Any) -> int:
    import torch

    if isinstance(item, torch.Tensor):
        return item.numel() * item.element_size()
    if isinstance(item, np.ndarray):
        return item.nbytes
    if isinstance(item, dict):
        return sum(_tensor_bytes(v) for v in item.values())
    if isinstance(item, (list, tuple)):
        return sum(_tensor_bytes(v) for v in item)
    return 0


def measure_cache(cfg: dict[str, Any], out: Path, iterations: int) -> dict[str, Any]:
    """Fold 0's cache in this process: planned vs held bytes per case, RSS growth, disk bytes per case,
    data seconds per iteration, validation cache bytes per case."""
    from monai.data import PersistentDataset
    from monai.data.utils import json_hashing
    from monai.transforms import Compose

    from petclick.training.data import (fold_cache_plan, fold_files, train_dataset, train_loader, train_transforms,
                                        val_dataset)

    files = fold_files(cfg["datalist"], cfg["dataroot"], 0)
    plan = fold_cache_plan(cfg, files.train, files.val)
    r0 = rss()
    t0 = time.time()
    ds = train_dataset(cfg, files.train, cfg["data"]["roi"], plan=plan)
    build_s = time.time() - t0
    held = [_tensor_bytes(c) for c in getattr(ds, "_cache", [])]
    ram_growth = rss() - r0
    t0 = time.time()
    loader = train_loader(cfg, ds, 0)
    batches = iter(loader)
    next(batches)  # the workers' start
    t1 = time.time()
    n = 0
    for _ in range(iterations):
        try:
            next(batches)
        except StopIteration:
            batches = iter(loader)
            next(batches)
        n += 1
    data_s = (time.time() - t1) / max(1, n)
    first_s = t1 - t0
    del loader, batches
    r1 = rss()
    vds = val_dataset(cfg, files.val, plan)
    val_held = [_tensor_bytes(c) for c in getattr(vds, "_cache", [])]
    val_growth = rss() - r1
    # the disk cache of one case per grid
    det, _ = train_transforms({**cfg, "data": {**cfg["data"], "cache_dtype": "float16"}}, cfg["data"]["roi"])
    disk = out / "disk_cache"
    disk.mkdir(exist_ok=True)
    items = [{"image": f["image"], "pet": f["pet"], "label": f["label"]} for f in files.train]
    pds = PersistentDataset(items, transform=Compose(det), cache_dir=str(disk), hash_transform=json_hashing)
    t0 = time.time()
    for i in range(len(pds)):
        pds[i]
    disk_write_s = (time.time() - t0) / max(1, len(pds))
    t0 = time.time()
    for i in range(len(pds)):
        pds[i]
    disk_read_s = (time.time() - t0) / max(1, len(pds))
    disk_files = sorted(disk.glob("*.pt"))
    return {"plan": plan.to_dict(), "n_train": len(files.train), "n_val": len(files.val),
            "build_s": round(build_s, 1), "held_bytes_per_case": float(np.mean(held)) if held else 0.0,
            "planned_bytes_per_case": plan.case_bytes, "rss_growth_per_case": ram_growth / max(1, len(held)),
            "data_s_per_iteration": round(data_s, 3), "first_batch_s": round(first_s, 1),
            "val_held_bytes_per_case": float(np.mean(val_held)) if val_held else 0.0,
            "val_rss_growth_per_case": val_growth / max(1, len(val_held)),
            "disk_bytes_per_case_float16": float(np.mean([p.stat().st_size for p in disk_files])) if disk_files else 0.0,
            "disk_write_s_per_case": round(disk_write_s, 2), "disk_read_s_per_case": round(disk_read_s, 2)}


def fold_plans(cfg: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Each fold's planned peak for its training process on this CPU (petclick.training.plan, as RunPlan.peak_bytes):
    the process plus the larger of filling the caches and the caches + loader workers + validating the
    largest case."""
    from petclick.training.data import _header_shape, fold_cache_plan, fold_files
    from petclick.training.plan import network_voxels, process_bytes, resampled_voxels, validation_work_bytes

    out = {}
    for f in (0, 1):
        files = fold_files(cfg["datalist"], cfg["dataroot"], f)
        plan = fold_cache_plan(dict(cfg, fold=f), files.train, files.val)
        target = cfg["data"]["spacing"]
        work = max(validation_work_bytes(network_voxels(s, sp, target, cfg["data"]["roi"]), math.prod(s),
                                         cfg["infer"]["overlap"], on_device=False,
                                         resampled=bool(resampled_voxels(s, sp, target)))
                   for s, sp in (_header_shape(e["pet"]) for e in files.val))
        proc = process_bytes(0, cuda=False)
        workers = process_bytes(cfg["data"]["num_workers"], cuda=False) - proc
        caches = plan.ram_bytes + plan.val_bytes
        fill, validating = proc + plan.fill_peak_bytes, proc + caches + workers + work
        out[f] = {"caches": caches, "process": proc, "load": plan.load_bytes, "threads": plan.threads,
                  "workers": workers, "work": work, "fill": fill, "validating": validating,
                  "peak": max(fill, validating)}
    return out


def load_worker(pet: str, ct: str, label: str, cfg: dict[str, Any]) -> None:
    """(In a fresh process) preprocess one case through the training cache's chain in this thread; print
    the peak RSS growth (sampled every 5 ms) as JSON."""
    import psutil
    from monai.transforms import Compose

    from petclick.training.data import train_transforms

    det, _ = train_transforms({**cfg, "data": {**cfg["data"], "cache_dtype": "float32"}}, cfg["data"]["roi"])
    chain, proc = Compose(det), psutil.Process()
    base, peak, stop = proc.memory_info().rss, [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    chain({"image": ct, "pet": pet, "label": label})
    stop.set()
    sampler.join()
    print(json.dumps({"peak_growth": peak[0] - base, "seconds": round(time.time() - t0, 1)}))


def measure_load(datalist: Path) -> list[dict[str, Any]]:
    """The first case of each grid preprocessed alone in a fresh process: measured peak growth against
    petclick.training.plan.preprocess_bytes."""
    import subprocess

    from petclick.training.data import _header_shape
    from petclick.training.plan import preprocess_bytes

    rows, seen = [], set()
    for e in json.loads(datalist.read_text())["training"]:
        shape, spacing = _header_shape(e["pet"])
        if (shape, spacing) in seen:
            continue
        seen.add((shape, spacing))
        env = dict(os.environ, OMP_NUM_THREADS="1")
        res = subprocess.run([sys.executable, __file__, "--out", str(datalist.parent), "--load-worker", e["pet"],
                              e["image"], e["label"]], env=env, capture_output=True, text=True, check=True)
        got = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append({"shape": shape, "spacing": spacing, "measured": got["peak_growth"], "seconds": got["seconds"],
                     "planned": preprocess_bytes(shape, spacing, [2.04, 2.04, 3.0])})
        print(f"preprocessing one {shape} case at {spacing} mm in one thread: peak +{got['peak_growth'] / MB:.0f} MB "
              f"in {got['seconds']} s, planned {rows[-1]['planned'] / MB:.0f} MB "
              f"({100 * (rows[-1]['planned'] / got['peak_growth'] - 1):+.0f}%)", flush=True)
    return rows


def _log_times(work: Path, fold: int) -> list[tuple[float, str]]:
    import datetime

    log = work / f"segresnet_{fold}" / "model" / "train.log"
    out = []
    for line in (log.read_text().splitlines() if log.is_file() else []):
        try:
            out.append((datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp(), line[24:]))
        except ValueError:
            continue
    return out


def phase_peaks(work: Path, timeline: list, base: int) -> dict[str, int]:
    """The sampled peak (minus `base`, this process before AutoRunner) of each fold's two phases: filling its
    caches (from its first log line to "caches filled") and training + validating (to "done in")."""
    out = {}
    for f in (0, 1):
        lines = _log_times(work, f)
        filled = [t for t, x in lines if "caches filled" in x]
        done = [t for t, x in lines if " done in " in x]
        if not lines or not filled or not done:
            continue
        for name, (a, b) in {f"fold {f}: filling the caches": (lines[0][0] - 1, filled[0]),
                             f"fold {f}: training and validating": (filled[0], done[-1])}.items():
            inside = [total for t, total, _ in timeline if a <= t <= b]
            out[name] = (max(inside) - base) if inside else 0
    return out


def peak_phase(work: Path, when: float) -> str:
    """The training log line (either fold's train.log) that the peak came after, or the stage before training."""
    lines = [(t, f"fold {f}: {x}") for f in (0, 1) for t, x in _log_times(work, f)]
    before = [x for x in sorted(lines) if x[0] <= when]
    return before[-1][1][:200] if before else "before training (AutoRunner's analysis and bundle generation)"


def run_autorunner(args: argparse.Namespace, datalist: Path, work: Path) -> dict[str, Any]:
    """AutoRunner over the cohort (2 folds, the bench's overrides, no ensemble); peak RSS of the tree,
    each fold's validation seconds per case and the seconds of each stage."""
    from petclick.config.packaged import BUNDLES
    from petclick.core.yamlio import read_yaml, write_yaml

    os.environ["CMD_PREFIX"] = sys.executable
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    user = {"modality": "CT", "datalist": str(datalist), "dataroot": str(datalist.parent),
            "templates_path_or_url": str(BUNDLES), "algos": ["segresnet"], "work_dir": str(work), "num_fold": 2,
            "sigmoid": True, "preset": "autopet", "num_repeats": 1, "overrides": overrides(args)}
    input_yaml = write_yaml(work.parent / "input.yaml", user)
    from monai.apps.auto3dseg import AutoRunner

    base = rss(pss=True)
    sampler = PeakRSS()
    sampler.start()
    t0 = time.time()
    AutoRunner(work_dir=str(work), input=str(input_yaml), ensemble=False).run()
    wall = time.time() - t0
    sampler.stop.set()
    sampler.join()
    folds = {}
    for f in range(2):
        import yaml

        progress = yaml.safe_load((work / f"segresnet_{f}" / "model" / "repeat0" / "progress.yaml").read_text()) or []
        last = progress[-1] if progress else {}
        folds[f] = {"validation_s": last.get("time_s"), "n_cases": last.get("n_cases"),
                    "val_s_per_case": (last["time_s"] / last["n_cases"]) if last.get("n_cases") else None,
                    "score": last.get("avg_dice_score")}
        cfg = read_yaml(work / f"segresnet_{f}" / "configs" / "hyper_parameters.yaml")
        folds[f]["val_every"] = cfg["training"]["val_every"]
        folds[f]["plan"] = cfg.get("plan")
    return {"wall_s": round(wall, 1), "peak_rss": sampler.peak, "parent_rss": base, "folds": folds,
            "peak_after": peak_phase(work, sampler.when), "peak_parts": sampler.parts,
            "phase_peaks": phase_peaks(work, sampler.timeline, base)}


def project(measured: dict[str, Any], cfg: dict[str, Any], ram_gb: float) -> list[str]:
    """The plan of 1,611 studies (1,290 training / 321 validation per fold) on 1 and 8 GPUs, with the
    measured bytes per case scaling the plan's model."""
    from petclick.training import plan as planmod

    ratio = measured["held_bytes_per_case"] / measured["planned_bytes_per_case"] if measured["planned_bytes_per_case"] else 1.0
    full = dict(cfg)
    from petclick.config.presets import AUTOPET

    full["data"] = dict(cfg["data"], roi=[192, 192, 384], num_workers=AUTOPET["data"]["num_workers"],
                        num_crops=AUTOPET["data"]["num_crops"])
    full["infer"] = dict(cfg.get("infer") or {}, overlap=AUTOPET["infer"]["overlap"])
    full["network"] = dict(cfg["network"], kwargs={})
    full["training"] = {**cfg["training"], "num_epochs": "auto", "num_iterations_per_epoch": None, "val_every": "auto"}
    full["num_repeats"] = 4
    shapes = [((400, 400, 326), (2.04, 2.04, 3.0))] * 1611
    lines = [f"measured / planned bytes per cached case: {ratio:.2f}"]
    for gpus in (1, 8):
        p = planmod.make_plan(full, shapes, 1290, 321, gpus=gpus, folds=5, available=int(ram_gb * planmod.GB),
                              cache_dir="/tmp")
        lines.append(f"-- 1,611 studies of 400x400x326 at 2.04x2.04x3 mm, {gpus} GPU(s), {ram_gb:.0f} GB RAM:")
        lines += ["   " + x for x in p.lines() if not x.startswith("note: largest")]
    longest = planmod.network_voxels((400, 400, 963), (2.04, 2.04, 2.0), [2.04, 2.04, 3.0], [192, 192, 384])
    lines.append(f"-- the longest study, 400x400x963 at 2 mm: {longest / 1e6:.0f} M network voxels, "
                 f"{ratio * planmod.case_bytes(longest, 'float32') / MB:.0f} MB cached in float32, "
                 f"{ratio * planmod.case_bytes(longest, 'float16') / MB:.0f} MB in float16; validation "
                 f"{planmod.validation_case_seconds(planmod.STEP_TIMES['autopet'], longest, 3):.1f} s at the recorded H100 pass")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cases", type=int, default=5)
    ap.add_argument("--long", type=int, default=600, help="slices of the long case (real max 963)")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--roi", type=int, nargs=3, default=[96, 96, 128])
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ram-gb", type=float, default=128.0, help="the node the projection plans for")
    ap.add_argument("--skip-autorunner", action="store_true")
    ap.add_argument("--load-worker", nargs=3, default=None, metavar=("PET", "CT", "LABEL"),
                    help="(internal) preprocess one case and print its peak RSS growth")
    ap.add_argument("--project-from", type=Path, default=None,
                    help="only print the projection from an earlier run's bench_scale.json (with today's plan model)")
    args = ap.parse_args()
    if args.load_worker:
        load_worker(*args.load_worker, config(args, args.out / "datalist.json", args.out / "work_dir"))
        return
    if args.project_from is not None:
        from petclick.training.data import fold_cache_plan, fold_files

        earlier = json.loads(args.project_from.read_text())
        cfg = config(args, args.out / "datalist.json", args.out / "work_dir")
        files = fold_files(cfg["datalist"], cfg["dataroot"], 0)
        earlier["cache"]["planned_bytes_per_case"] = fold_cache_plan(cfg, files.train, files.val).case_bytes  # today's model
        print(f"planned bytes per case now {earlier['cache']['planned_bytes_per_case'] / MB:.0f} MB, held "
              f"{earlier['cache']['held_bytes_per_case'] / MB:.0f} MB")
        print("\n".join(project(earlier["cache"], config(args, args.out / "datalist.json", args.out / "work_dir"),
                                 args.ram_gb)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    datalist = make_cohort(args.out, args.cases, args.long, args.seed)
    phantoms_s = time.time() - t0
    work = args.out / "work_dir"
    cfg = config(args, datalist, work)
    print(f"== deviations from the autopet preset: {json.dumps(overrides(args))}", flush=True)
    result: dict[str, Any] = {"phantoms_s": round(phantoms_s, 1), "args": vars(args) | {"out": str(args.out)}}
    if not args.skip_autorunner:  # first: the process tree's peak RSS without this process's measurements
        ar = run_autorunner(args, datalist, work)
        result["autorunner"] = ar
    result["load"] = measure_load(datalist)
    plans = fold_plans(cfg)
    result["fold_plans"] = plans
    measured = measure_cache(cfg, args.out, max(4, args.iterations))
    result["cache"] = measured
    p = measured["plan"]
    print(f"== cache (fold 0, {measured['n_train']} training / {measured['n_val']} validation cases, built in "
          f"{measured['build_s']} s): {p['dtype']}, {p['ram_cases']} in RAM ({p['reason']})")
    print(f"RAM per cached training case: planned {measured['planned_bytes_per_case'] / MB:.0f} MB, held "
          f"{measured['held_bytes_per_case'] / MB:.0f} MB (tensors), RSS growth {measured['rss_growth_per_case'] / MB:.0f} MB")
    print(f"validation cache per case: held {measured['val_held_bytes_per_case'] / MB:.0f} MB, RSS growth "
          f"{measured['val_rss_growth_per_case'] / MB:.0f} MB")
    print(f"disk cache per case (float16): {measured['disk_bytes_per_case_float16'] / MB:.0f} MB, written in "
          f"{measured['disk_write_s_per_case']} s, read in {measured['disk_read_s_per_case']} s")
    print(f"data time per iteration ({args.workers} workers, batch 1 x 1 crop of {args.roi}): "
          f"{measured['data_s_per_iteration']} s (first batch {measured['first_batch_s']} s)", flush=True)
    for f, q in plans.items():
        print(f"fold {f}'s planned peak {q['peak'] / MB:.0f} MB: the larger of filling the caches {q['fill'] / MB:.0f} MB "
              f"(process {q['process'] / MB:.0f} MB + preprocessing {q['load'] / MB:.0f} MB on {q['threads']} thread(s) "
              f"[+ the training cache]) and validating {q['validating'] / MB:.0f} MB (process + caches "
              f"{q['caches'] / MB:.0f} MB + {q['workers'] / MB:.0f} MB workers + {q['work'] / MB:.0f} MB its largest case)")
    if not args.skip_autorunner:
        planned = max(q["peak"] for q in plans.values())
        peak = ar["peak_rss"] - ar["parent_rss"]
        print(f"== AutoRunner (analysis, 2 folds x {args.iterations} iterations + 1 validation): {ar['wall_s']} s")
        print(f"peak of the training process tree (PSS, this process's {ar['parent_rss'] / MB:.0f} MB left out): "
              f"{peak / MB:.0f} MB, after \"{ar['peak_after']}\"; the larger fold plan {planned / MB:.0f} MB: "
              f"{100 * (peak / planned - 1):+.0f}%")
        print("at the peak: " + ", ".join(f"{k} {v / MB:.0f} MB" for k, v in ar["peak_parts"].items()))
        for name, got in ar["phase_peaks"].items():
            q = plans[int(name.split()[1].rstrip(":"))]
            want = q["fill"] if "filling" in name else q["validating"]
            print(f"{name}: peak {got / MB:.0f} MB, planned {want / MB:.0f} MB ({100 * (got / want - 1):+.0f}%)")
        for f, v in ar["folds"].items():
            print(f"fold {f}: validation {v['validation_s']} s for {v['n_cases']} cases "
                  f"({v['val_s_per_case'] and round(v['val_s_per_case'], 1)} s per case), score {v['score']}, "
                  f"val_every {v['val_every']}")
    print("== projection")
    lines = project(measured, cfg, args.ram_gb)
    print("\n".join(lines))
    result["projection"] = lines
    (args.out / "bench_scale.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"wrote {args.out / 'bench_scale.json'}")


if __name__ == "__main__":
    main()
