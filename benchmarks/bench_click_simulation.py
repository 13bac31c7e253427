"""Speed of click simulation on one CPU core: the official rule (10+10 clicks) on a whole-body case,
the training curriculum on a patch, and error-driven clicks.

    OMP_NUM_THREADS=1 python benchmarks/bench_click_simulation.py [--shape 400 400 326] [--repeats 3]

The case is a petclick phantom (petclick.phantoms.generate_case) at the autoPET grid by default.
Prints one table row per phase (best of --repeats, milliseconds). Target: official total <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from petclick.clicks.click_curriculum import ClickCurriculum  # noqa: E402
from petclick.clicks.error_driven import next_error_clicks  # noqa: E402
from petclick.clicks.simulate import (Components, background_threshold, centre_click,  # noqa: E402
                                      clicks_for_components, exceeds, simulate_clicks)
from petclick.phantoms import generate_case  # noqa: E402


def best_ms(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=(400, 400, 326))
    ap.add_argument("--seed", type=int, default=5, help="phantom seed (5: 17 lesions)")
    ap.add_argument("--tracer", default="fdg", choices=("fdg", "psma"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--patch", type=int, nargs=3, default=(192, 192, 192), help="training patch size")
    args = ap.parse_args()
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    case = generate_case("bench", args.seed, tuple(args.shape), tracer=args.tracer, clicks=False)
    made = time.perf_counter() - t0
    label, pet = case.label > 0, np.asarray(case.pet, np.float32)
    r = args.repeats
    rng = np.random.default_rng(0)

    rows: list[tuple[str, float, str]] = []
    ms, lesions = best_ms(lambda: Components(label), r)
    rows.append(("labelling: lesion components (cc3d, 26-conn)", ms, f"{len(lesions)} components"))
    ms, thr = best_ms(lambda: background_threshold(pet, label), r)
    rows.append(("threshold: exact p99.75 of non-lesion PET", ms, f"{thr:.3f} SUV"))
    ms, hot_mask = best_ms(lambda: exceeds(pet, thr) & ~label, r)
    rows.append(("threshold: hot mask (PET > thr, outside lesions)", ms, f"{int(hot_mask.sum())} voxels"))
    ms, hot = best_ms(lambda: Components(hot_mask), r)
    rows.append(("labelling: background components", ms, f"{len(hot)} components"))
    ms, _ = best_ms(lambda: [centre_click(lesions.region(i), rng) for i in range(min(10, len(lesions)))], r)
    rows.append(("EDTs: lesion centres (box EDT per component)", ms, f"{min(10, len(lesions))} EDTs"))
    ms, _ = best_ms(lambda: clicks_for_components(lesions, 10, rng) + clicks_for_components(hot, 10, rng), r)
    rows.append(("EDTs: 10+10 centre/boundary clicks", ms, ""))
    ms, clicks = best_ms(lambda: simulate_clicks(case.label, pet, budget=10, seed=42), r)
    rows.append(("TOTAL simulate_clicks, 10+10 (target <= 2000 ms)", ms,
                 f"{len(clicks.tumor)}+{len(clicks.background)} clicks"))

    # a training patch around a lesion, and error-driven clicks on a degraded prediction
    centre = np.array(clicks.tumor[0] if clicks.tumor else np.array(label.shape) // 2)
    lo = np.clip(centre - np.array(args.patch) // 2, 0, np.array(label.shape) - np.array(args.patch))
    box = tuple(slice(int(a), int(a) + int(n)) for a, n in zip(lo, args.patch))
    cur = ClickCurriculum.from_config({"count": "full", "samplers": {"official": 0.8, "interior": 0.2}})
    ms, _ = best_ms(lambda: cur.sample_clicks(label[box], pet[box], rng), r)
    rows.append((f"curriculum: 10+10 clicks on a {'x'.join(map(str, args.patch))} patch", ms, "official 0.8 / interior 0.2"))
    pred = np.roll(label, 3, axis=0)
    ms, _ = best_ms(lambda: next_error_clicks(pred, label), r)
    rows.append(("error-driven: next tumour + background click", ms, "prediction = label shifted 3 voxels"))

    print(f"case {'x'.join(map(str, args.shape))} ({args.tracer}, seed {args.seed}, {len(lesions)} lesions), "
          f"generated in {made:.1f} s; one CPU thread (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
          f"torch threads {torch.get_num_threads()}); best of {r}")
    print(f"| {'phase':<55} | {'ms':>8} | note |")
    print(f"| {'-' * 55} | {'-' * 8} | --- |")
    for name, ms, note in rows:
        print(f"| {name:<55} | {ms:8.1f} | {note} |")


if __name__ == "__main__":
    main()
