"""Where one training iteration goes, and iterations per second, at the demo scale and at the GPU
check's scale.

    python benchmarks/bench_training.py --scale demo                 # CPU, the demo preset
    python benchmarks/bench_training.py --scale gpu --device cuda    # the GPU check's settings
    python benchmarks/bench_training.py --scale demo --variants before after --threads-matrix --load 2

For each variant (a set of YAML overrides and an OpenMP environment, see VARIANTS) it prints
  1. the per-stage breakdown of one iteration, run in this process without loader workers: cached
     load, crop, augmentation, click simulation, encoding (each per sample), collate, batch stage
     (intensity augmentation and encoding on the batch, if configured), forward, backward, optimiser;
     wall and CPU milliseconds per iteration (CPU time is steadier on a loaded machine);
  2. the end-to-end iterations per second of the real loop (RepeatTrainer._epoch, the variant's
     loader workers), in a fresh process per run with the variant's environment (`before`: OpenMP's
     spinning default), --repeats runs per variant alternating, and the median.
`--threads-matrix` runs (2) in fresh subprocesses for torch threads x OMP_WAIT_POLICY, alone and
beside `--load` busy processes (the "10x slower under load" case: OpenMP threads spinning at barriers).

The cohort is generated under --data when missing (demo: the demo cohort, 24 cases of 48x48x64, seed 7; gpu: 24 cases
of 96x96x128, seed 11, as benchmarks/gpu_train_check.sh).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from petclick.config.packaged import BUNDLES, INPUT_TEMPLATE

#: The two scales: cohort, network, patch and batch of the demo preset and of the GPU check.
SCALES: dict[str, dict[str, Any]] = {
    "demo": {"cohort": {"cases": 24, "seed": 7, "shape": [48, 48, 64], "min_test_cases": 8}, "preset": "demo",
             "overrides": {}},
    "gpu": {"cohort": {"cases": 24, "seed": 11, "shape": [96, 96, 128]}, "preset": "autopet", "overrides": {
        "data": {"roi": [96, 96, 128], "num_crops": 4, "batch_size": 2, "num_workers": 8},
        "network": {"kwargs": {"init_filters": 16, "blocks_down": [1, 2, 2, 4], "dsdepth": 3}}}},
}

#: Variants compared within one run: `before` = the settings of main before issue 13 (float32,
#: contiguous memory, clicks and encoding per sample, 2 torch threads, OpenMP's default spinning).
VARIANTS: dict[str, dict[str, Any]] = {
    "before": {"training": {"amp": False, "channels_last": False, "num_threads": 2},
               "data": {"batch_transforms": False}},
    "after": {},  # the preset as it is now
}
#: Environment of each variant's end-to-end run (a fresh process): `before` keeps OpenMP's spinning default.
VARIANT_ENV: dict[str, dict[str, str | None]] = {
    "before": {"PETCLICK_OMP_DEFAULTS": "0", "OMP_WAIT_POLICY": None},
    "after": {},
}

STAGES = ("cached load", "crop", "augmentation", "click simulation", "encoding", "collate", "batch stage",
          "forward", "backward", "optimiser")


def _stage(transform) -> str:
    name = type(transform).__name__
    if name in ("RandCropByPosNegLabeld", "RandSpatialCropSamplesd") or (
            name == "DeleteItemsd" and "label_fg_indices" in getattr(transform, "keys", ())):
        return "crop"
    if name == "SimulateTrainingClicksd":
        return "click simulation"
    if name == "EncodeClicksd":
        return "encoding"
    return "augmentation"


class Timer:
    """Accumulates wall and CPU seconds per stage."""

    def __init__(self):
        self.wall = {s: 0.0 for s in STAGES}
        self.cpu = {s: 0.0 for s in STAGES}

    def __call__(self, stage: str, fn: Callable, *args, sync: Callable[[], None] = lambda: None):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args)
        sync()
        self.wall[stage] += time.perf_counter() - w
        self.cpu[stage] += time.process_time() - c
        return out


def ensure_cohort(data: Path, cohort: dict) -> Path:
    from petclick.workflows.demo import ensure_cohort as ensure

    return ensure(data, int(cohort["cases"]), int(cohort["seed"]), cohort["shape"], cohort.get("min_test_cases"))


def make_config(scale: str, datalist: Path, variant: dict[str, Any], device: str) -> dict[str, Any]:
    """A resolved training config (what fill_template_config writes) for the scale and variant."""
    from petclick.auto3dseg.algo import merged_config
    from petclick.core.yamlio import deep_merge, read_yaml
    from petclick.networks.roi import fit_roi

    spec = SCALES[scale]
    template = read_yaml(BUNDLES / "segresnet" / "configs" / "hyper_parameters.yaml")
    cfg = merged_config(template, {"preset": spec["preset"], "overrides": deep_merge(spec["overrides"], variant)},
                        "segresnet")
    cfg["data"]["spacing"] = None  # every phantom shares one spacing
    shape = spec["cohort"]["shape"]
    cfg["data"]["roi"] = list(fit_roi(cfg["data"]["roi"], shape, "segresnet", **cfg["network"]["kwargs"]))
    cfg.update(datalist=str(datalist), dataroot=str(datalist.parent), fold=0, algo="segresnet")
    cfg["training"].update(device=device, num_epochs=1, val_every=1000)
    if not cfg["training"].get("num_iterations_per_epoch"):
        cfg["training"]["num_iterations_per_epoch"] = 10
    return cfg


def breakdown(cfg: dict[str, Any], iterations: int, device: str, data_only: bool = False) -> dict[str, Any]:
    """Per-stage seconds of `iterations` iterations, in this process (no loader workers);
    `data_only` skips forward, backward and optimiser."""
    import torch
    from monai.data import list_data_collate

    from petclick.training.data import fold_files, train_dataset, train_transforms
    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer
    from petclick.training.threads import apply_threads

    apply_threads(cfg["training"], int(cfg["data"].get("num_workers", 0)))
    cfg = copy.deepcopy(cfg)
    cfg["data"]["num_workers"] = 0
    files = fold_files(cfg["datalist"], cfg["dataroot"], 0)
    ds = train_dataset(cfg, files.train, cfg["data"]["roi"])
    _, rand = train_transforms(cfg, cfg["data"]["roi"])
    rand = [t for t in rand]
    for n, t in enumerate(rand):
        if hasattr(t, "set_random_state"):
            t.set_random_state(seed=n)
    dev = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = RepeatTrainer(cfg, 0, Path(tmp), DistContext(device=dev), ds, None)
    timer = Timer()
    batch_size = int(cfg["data"].get("batch_size", 1))
    rng = np.random.default_rng(0)

    def one(items_for_batch):
        samples = []
        for index in items_for_batch:
            item = timer("cached load", lambda: copy.deepcopy(ds._cache[index]))
            data: Any = item
            for t in rand:
                stage = _stage(t)
                if isinstance(data, list):
                    data = timer(stage, lambda: [t(d) for d in data])
                else:
                    data = timer(stage, t, data)
            samples += data if isinstance(data, list) else [data]
        batch = timer("collate", list_data_collate, samples)
        batch = timer("batch stage", trainer.batch_stage, batch, sync=sync)
        return batch

    for warm in (True, False):
        if not warm:
            timer = Timer()
        for _ in range(2 if warm else iterations):
            batch = one(rng.integers(len(ds), size=batch_size).tolist())
            if not data_only:
                trainer.step(batch, timer=timer, sync=sync)
    return {"iterations": iterations, "wall_ms": {s: 1000 * v / iterations for s, v in timer.wall.items()},
            "cpu_ms": {s: 1000 * v / iterations for s, v in timer.cpu.items()}}


def loader_only(cfg: dict[str, Any], iterations: int) -> dict[str, float]:
    """Batches per second of the training loader alone (the config's workers), batch stage included."""
    import torch

    from petclick.training.data import fold_files, train_dataset, train_loader
    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer

    files = fold_files(cfg["datalist"], cfg["dataroot"], 0)
    ds = train_dataset(cfg, files.train, cfg["data"]["roi"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = RepeatTrainer(cfg, 0, Path(tmp), DistContext(device=torch.device("cpu")), ds, None)
    n, w = 0, None
    while n < iterations + 2:
        for batch in train_loader(cfg, ds, n):
            trainer.batch_stage(batch)
            n += 1
            if n == 2:
                w = time.perf_counter()
            if n >= iterations + 2:
                break
    wall = time.perf_counter() - w
    return {"it_per_s": iterations / wall, "wall_ms": 1000 * wall / iterations, "cpu_ms": float("nan")}


def end_to_end(cfg: dict[str, Any], iterations: int, device: str) -> dict[str, float]:
    """Iterations per second of the real loop (RepeatTrainer._epoch, the config's loader workers)."""
    import torch

    from petclick.training.data import fold_files, train_dataset
    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer
    from petclick.training.threads import apply_threads

    apply_threads(cfg["training"], int(cfg["data"].get("num_workers", 0)))
    cfg = copy.deepcopy(cfg)
    cfg["training"]["num_iterations_per_epoch"] = iterations
    files = fold_files(cfg["datalist"], cfg["dataroot"], 0)
    ds = train_dataset(cfg, files.train, cfg["data"]["roi"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = RepeatTrainer(cfg, 0, Path(tmp), DistContext(device=torch.device(device)), ds, None)
        trainer.iters = max(2, iterations // 5)
        trainer._epoch(0)  # warm-up
        trainer.iters = iterations
        w, c = time.perf_counter(), time.process_time()
        trainer._epoch(1)
        wall, cpu = time.perf_counter() - w, time.process_time() - c
    return {"it_per_s": iterations / wall, "wall_ms": 1000 * wall / iterations, "cpu_ms": 1000 * cpu / iterations}


def _busy(seconds: float) -> None:
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        x += 1


def _e2e_subprocess(args, variant: str, env_updates: dict[str, str | None], sets: list[str] = ()) -> dict:
    """end_to_end() of `variant` in a fresh process (OpenMP reads its environment once, at start)."""
    env = dict(os.environ)
    for key, value in env_updates.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cmd = [sys.executable, __file__, "--scale", args.scale, "--data", str(args.data), "--device", args.device,
           "--iterations", str(args.iterations), "--variants", variant, "--e2e-only", "--json-line",
           "--set", *args.set, *sets]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def threads_matrix(args, variant: str) -> list[dict[str, Any]]:
    """End-to-end it/s in fresh subprocesses for threads x OMP_WAIT_POLICY, alone and under load."""
    import multiprocessing as mp

    rows = []
    for load in sorted({0, args.load}):
        for threads in (1, 2):
            for policy in ("", "PASSIVE", "ACTIVE"):
                busy = [mp.Process(target=_busy, args=(3600,), daemon=True) for _ in range(load)]
                for p in busy:
                    p.start()
                try:  # PETCLICK_OMP_DEFAULTS=0: measure the policy given here, not petclick's default
                    res = _e2e_subprocess(args, variant, {"PETCLICK_OMP_DEFAULTS": "0", "OMP_WAIT_POLICY": policy or None},
                                          [f"training#num_threads={threads}"])
                finally:
                    for p in busy:
                        p.terminate()
                rows.append({"load": load, "threads": threads, "OMP_WAIT_POLICY": policy or "(unset)", **res})
                print(f"  load {load}  threads {threads}  OMP_WAIT_POLICY {policy or '(unset)':>8}: "
                      f"{res['it_per_s']:.2f} it/s ({res['wall_ms']:.0f} ms wall, {res['cpu_ms']:.0f} ms CPU)",
                      flush=True)
    return rows


def _set(values: list[str]) -> dict[str, Any]:
    """`--set section#key=value ...` as overrides: the parser `petclick hpo --set` uses (bad items: InputError)."""
    from petclick.commands.hpo import parse_sets

    return parse_sets(values)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=sorted(SCALES), default="demo")
    ap.add_argument("--data", type=Path, help="cohort folder (default /tmp/petclick_bench_<scale>)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--variants", nargs="+", default=["before", "after"], choices=sorted(VARIANTS))
    ap.add_argument("--set", nargs="*", default=[], help="extra overrides section#key=value (YAML values)")
    ap.add_argument("--data-only", action="store_true",
                    help="time the data stages and the loader alone (e.g. the gpu scale on a CPU machine)")
    ap.add_argument("--threads-matrix", action="store_true", help="threads x OMP_WAIT_POLICY, alone and under --load")
    ap.add_argument("--load", type=int, default=2, help="busy processes beside the --threads-matrix runs")
    ap.add_argument("--repeats", type=int, default=3, help="end-to-end runs per variant (median reported)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--e2e-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json-line", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.data = args.data or Path(tempfile.gettempdir()) / f"petclick_bench_{args.scale}"
    datalist = ensure_cohort(args.data, SCALES[args.scale]["cohort"])
    from petclick.core.yamlio import apply_overrides

    results: dict[str, Any] = {}
    for name in args.variants:
        cfg = apply_overrides(make_config(args.scale, datalist, VARIANTS[name], args.device), _set(args.set))
        if args.e2e_only:
            res = end_to_end(cfg, args.iterations, args.device)
            print(json.dumps(res) if args.json_line else res)
            return 0
        print(f"== {name}: roi {cfg['data']['roi']} x {cfg['data']['num_crops']} crops x batch "
              f"{cfg['data']['batch_size']}, amp {cfg['training'].get('amp')}, channels_last "
              f"{cfg['training'].get('channels_last')}, batch transforms {cfg['data'].get('batch_transforms')}, "
              f"threads {cfg['training'].get('num_threads')}, device {args.device}, "
              f"OpenMP {VARIANT_ENV[name] or 'petclick default (PASSIVE)'}", flush=True)
        b = breakdown(cfg, args.iterations, args.device, args.data_only)
        print(f"stage breakdown (this process, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}):")
        print(f"{'stage':>18} {'wall ms':>9} {'CPU ms':>9}")
        for s in STAGES:
            print(f"{s:>18} {b['wall_ms'][s]:9.1f} {b['cpu_ms'][s]:9.1f}")
        data_ms = sum(b["wall_ms"][s] for s in STAGES[:7])
        total = sum(b["wall_ms"].values())
        print(f"{'total':>18} {total:9.1f} {sum(b['cpu_ms'].values()):9.1f}   data share {data_ms / total:.0%}")
        results[name] = {"breakdown": b, "end_to_end": []}
        if args.data_only:
            e = loader_only(cfg, args.iterations)
            results[name]["end_to_end"].append(e)
            print(f"loader alone ({cfg['data'].get('num_workers', 0)} workers): {e['it_per_s']:.2f} it/s", flush=True)
        if args.threads_matrix:
            results[name]["threads"] = threads_matrix(args, name)
    if not args.data_only:  # end to end, each variant in a fresh process, alternating (the load drifts)
        print(f"\nend to end (the real loop, a fresh process per run, {args.repeats} run(s) per variant, alternating):")
        for r in range(args.repeats):
            for name in args.variants:
                e = _e2e_subprocess(args, name, VARIANT_ENV[name])
                results[name]["end_to_end"].append(e)
                print(f"  run {r + 1} {name:>7}: {e['it_per_s']:.2f} it/s ({e['wall_ms']:.0f} ms wall, "
                      f"{e['cpu_ms']:.0f} ms CPU per iteration)", flush=True)
        med = {n: float(np.median([e["it_per_s"] for e in results[n]["end_to_end"]])) for n in args.variants}
        for name in args.variants:
            ratio = f", {med[name] / med['before']:.2f}x `before`" if "before" in med else ""
            print(f"{name}: median {med[name]:.2f} it/s{ratio}")
    try:
        print(f"load average during the run: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    except OSError:
        pass
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
