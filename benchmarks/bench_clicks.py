"""Click headline figures against the issue's targets, in one table:

- official simulation, 10 tumour + 10 background clicks on a 400x400x326 synthetic whole-body case
  (a petclick phantom), one CPU thread; target <= 2 s;
- encoding 10+10 clicks into a 192^3 patch (2 image channels in, 4 out): one CPU thread, target
  <= 150 ms; CUDA when available, target <= 5 ms.

    python benchmarks/bench_clicks.py [--shape 400 400 326] [--patch 192] [--repeats 5]

Per-phase breakdowns: benchmarks/bench_click_simulation.py and benchmarks/bench_click_encoding.py.
"""

from __future__ import annotations

import argparse
import os

os.environ["OMP_NUM_THREADS"] = "1"  # before numpy/torch load their thread pools

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from monai.data import MetaTensor  # noqa: E402

from petclick.clicks.encoding import encoder_from_config  # noqa: E402
from petclick.clicks.simulate import simulate_clicks  # noqa: E402
from petclick.phantoms import generate_case  # noqa: E402

ENCODINGS = {
    "edt r=5 voxel, two channels": {"encoding": "edt", "radius": 5},
    "gaussian sigma=3 unit, two channels": {"encoding": "gaussian", "sigma": 3, "gaussian_norm": "unit"},
    "disk r=5 voxel, signed channel": {"encoding": "disk", "radius": 5, "channels": "signed"},
}


def median_ms(fn, repeats: int, device: str = "cpu", warmup: int = 1) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(400, 400, 326))
    ap.add_argument("--seed", type=int, default=5, help="phantom seed (5: an FDG case with 17 lesions)")
    ap.add_argument("--patch", type=int, default=192)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    case = generate_case("bench", args.seed, tuple(args.shape), tracer="fdg", clicks=False)
    pet = np.asarray(case.pet, np.float32)
    rows = []
    ms = median_ms(lambda: simulate_clicks(case.label, pet, budget=10, seed=42), args.repeats)
    clicks = simulate_clicks(case.label, pet, budget=10, seed=42)
    rows.append((f"simulate 10+10, {'x'.join(map(str, args.shape))} ({len(clicks.tumor)}+{len(clicks.background)})",
                 "cpu", ms, 2000.0))

    rng = np.random.default_rng(0)
    size = args.patch
    points = {k: rng.uniform(0, size - 1, (10, 3)) for k in ("tumor", "background")}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        image = MetaTensor(torch.rand(2, size, size, size), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0])))
        image = image.to(device)
        for name, cfg in ENCODINGS.items():
            enc = encoder_from_config(cfg)
            reps = args.repeats if device == "cpu" else 10 * args.repeats
            ms = median_ms(lambda: enc(image, points), reps, device, warmup=2 if device == "cpu" else 5)
            rows.append((f"encode 10+10 into {size}^3: {name}", device, ms, 150.0 if device == "cpu" else 5.0))

    print(f"one CPU thread (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, torch threads "
          f"{torch.get_num_threads()}); median of {args.repeats}"
          + (f"; GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "; no GPU"))
    print(f"| {'what':<62} | device | {'ms':>8} | target ms | ok |")
    print(f"| {'-' * 62} | ------ | {'-' * 8} | --------- | -- |")
    for what, device, ms, target in rows:
        print(f"| {what:<62} | {device:<6} | {ms:8.1f} | {target:9.0f} | {'yes' if ms <= target else 'NO'} |")


if __name__ == "__main__":
    main()
