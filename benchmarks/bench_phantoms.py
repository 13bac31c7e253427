"""Speed and memory of the phantom generator: one case per run, one CPU core, fresh process each;
or, with --realism, how the lesions of a cohort compare with real autoPET lesions.

    python benchmarks/bench_phantoms.py [--shape 200 200 326] [--repeats 3] [--tracer fdg psma] [--full]
    python benchmarks/bench_phantoms.py --realism [--cases 80] [--seed 4242 31337] [--shape 200 200 326]

--realism generates each cohort in memory (the plan `petclick phantoms` uses: mixed tracers, 40%
without lesions) and prints the lesion-voxel SUV and HU statistics, measured as the nnU-Net
fingerprint measures them (petclick.phantoms.realism: 10,000 voxels per case with lesions,
pooled), beside the real autoPET V training set's, then the lesion sizes and the calibration checks.

Prints one row per (shape, tracer): median seconds to generate the arrays, to simulate the clicks,
to write the four NIfTI files and the click/meta JSON, the total, the peak resident memory of the
process (ru_maxrss, includes the Python/numpy/scipy baseline) and the peak of traced allocations
(tracemalloc; numpy arrays report to it). Targets (issue 2): 200x200x326 in <= 3 s, <= 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, tempfile, time, tracemalloc
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
import numpy as np
from petclick.phantoms import generate_case
from petclick.phantoms.case import simulate_case_clicks
from petclick.phantoms.cohort import write_case
shape, tracer, seed, trace = json.loads(sys.argv[1])
generate_case("fdg_warm_0", 1, (32, 32, 32), tracer=tracer, clicks=False)   # import/JIT warm-up
if trace:
    tracemalloc.start()
t0 = time.perf_counter()
case = generate_case(f"{tracer}_bench_{seed}", seed, tuple(shape), tracer=tracer, negative=False, centre=seed % 4, clicks=False)
t1 = time.perf_counter()
try:
    case.clicks = simulate_case_clicks(case)
    clicks_ok = True
except ImportError:
    clicks_ok = False
t2 = time.perf_counter()
with tempfile.TemporaryDirectory() as d:
    write_case(__import__("pathlib").Path(d), case)
t3 = time.perf_counter()
peak_traced = tracemalloc.get_traced_memory()[1] if trace else 0
print(json.dumps({"generate": t1 - t0, "clicks": t2 - t1 if clicks_ok else None, "write": t3 - t2,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "traced_mb": peak_traced / 2**20,
                  "lesions": len(case.meta["lesions"])}))
"""


def run_one(shape, tracer: str, seed: int, trace: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps([list(shape), tracer, seed, trace])],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def realism_table(shape, seeds, cases: int) -> int:
    """Print the realism table of one cohort per seed; returns 0 when every check passes, 1 otherwise."""
    import time

    from petclick.phantoms import generate_case
    from petclick.phantoms.cohort import plan_cohort
    from petclick.phantoms.realism import REAL_AUTOPET, cohort_realism

    results = []
    for seed in seeds:
        planned, _ = plan_cohort(cases, seed)
        t0 = time.perf_counter()
        results.append(cohort_realism(generate_case(pc.case_id, pc.seed, tuple(shape), tracer=pc.tracer,
                                                    negative=pc.negative, centre=pc.centre, clicks=False)
                                      for pc in planned))
        print(f"cohort seed {seed}: {cases} cases {'x'.join(map(str, shape))}, "
              f"{results[-1].cases_with_lesions} with lesions, generated in {time.perf_counter() - t0:.0f} s")
    cols = " | ".join(f"seed {s}" for s in seeds)
    print(f"\n| inside the lesion labels | real autoPET (nnU-Net fingerprint) | {cols} |")
    print("| --- | --- |" + " --- |" * len(seeds))
    keys = {"suv": ("p0.5", "median", "mean", "p99.5", "max"), "hu": ("p0.5", "median", "mean", "p99.5")}
    for channel, names in keys.items():
        unit, digits = ("SUV", 2) if channel == "suv" else ("HU", 0)
        real = " / ".join(f"{REAL_AUTOPET[channel][k]:g}" for k in names)
        ours = " | ".join(" / ".join(f"{r.__dict__[channel][k]:.{digits}f}" for k in names) for r in results)
        print(f"| {unit} {' / '.join(names)} | {real} | {ours} |")
    print("\n| lesion sizes | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("| --- |" + " --- |" * len(seeds))
    sizes = [r.size_summary() for r in results]
    print("| lesions, min / median / max mL | " + " | ".join(
        f"{z['lesions']}, {z['min_ml']:.2f} / {z['median_ml']:.1f} / {z['max_ml']:.0f}" for z in sizes) + " |")
    print("| sub-mL share, conglomerates of 100-400 mL | " + " | ".join(
        f"{z['sub_ml_fraction']:.0%}, {z['bulky_100_400']}" for z in sizes) + " |")
    ok = True
    for seed, r in zip(seeds, results):
        checks = r.checks()
        ok &= all(checks.values())
        print(f"checks, seed {seed}: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in checks.items()))
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realism", action="store_true", help="lesion statistics of cohorts against real autoPET")
    ap.add_argument("--cases", type=int, default=80, help="--realism: cases per cohort")
    ap.add_argument("--seed", type=int, nargs="+", default=[4242, 31337], help="--realism: cohort seeds")
    ap.add_argument("--shape", type=int, nargs=3, action="append", help="grid (repeatable); default 200 200 326")
    ap.add_argument("--full", action="store_true", help="also the autoPET grid 400 400 326")
    ap.add_argument("--tracer", nargs="+", default=["fdg", "psma"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    shapes = [tuple(s) for s in (args.shape or [(200, 200, 326)])] + ([(400, 400, 326)] if args.full else [])
    if args.realism:
        return max(realism_table(shape, args.seed, args.cases) for shape in shapes)
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    print("| shape | tracer | generate s | clicks s | write s | total s | peak RSS MB | peak traced MB | lesions |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for shape in shapes:
        for tracer in args.tracer:
            runs = [run_one(shape, tracer, 100 + r, trace=False) for r in range(args.repeats)]
            traced = run_one(shape, tracer, 100, trace=True)["traced_mb"]
            gen, clk, wr = (median([r[k] for r in runs]) for k in ("generate", "clicks", "write"))
            total = median([r["generate"] + (r["clicks"] or 0) + r["write"] for r in runs])
            rss = max(r["rss_mb"] for r in runs)
            les = "/".join(str(r["lesions"]) for r in runs)
            print(f"| {'x'.join(map(str, shape))} | {tracer} | {fmt(gen)} | {fmt(clk)} | {fmt(wr)} | {fmt(total)} | "
                  f"{rss:.0f} | {traced:.0f} | {les} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
