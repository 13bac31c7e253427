"""Click encoding speed: 10 tumour + 10 background clicks into a 192^3 patch, each encoding.

Two timings per encoding: `full` = EncodeClicks on a (2, X, Y, Z) CT/PET image (output allocation,
image copy and click channels: what a training/inference pipeline pays) and `channels` = the click
channels alone. CPU runs single-threaded by default (torch.set_num_threads(1)); CUDA (when available)
synchronises before and after each call. Median over --repeats calls after --warmup calls.
Targets (issue 3): <= 150 ms on one CPU core, <= 5 ms on a GPU. The `baseline` row is
torch.cat([image, zeros(2)]): the output allocation and copy any channel-appending transform pays.

On CPU most of the time is first-touch page faults of the fresh output (> 32 MB allocations bypass
glibc's heap and come back as new pages every call); torch's THP_MEM_ALLOC_ENABLE=1 (2 MB
transparent huge pages for large tensors, when the kernel allows `madvise`) removes most of it:

    THP_MEM_ALLOC_ENABLE=1 python benchmarks/bench_click_encoding.py

    python benchmarks/bench_click_encoding.py
    python benchmarks/bench_click_encoding.py --size 192 --repeats 10 --device cpu --threads 1
    python benchmarks/bench_click_encoding.py --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import numpy as np
import torch
from monai.data import MetaTensor

from petclick.clicks.encoding import EncodeClicks

CONFIGS: dict[str, dict] = {
    "edt r=5 vox": {"encoding": "edt", "radius": 5},
    "edt r=10 mm": {"encoding": "edt", "radius": 10, "radius_unit": "mm"},
    "disk r=5 vox": {"encoding": "disk", "radius": 5},
    "gaussian s=3 peak": {"encoding": "gaussian", "sigma": 3},
    "gaussian s=3 unit": {"encoding": "gaussian", "sigma": 3, "gaussian_norm": "unit"},
    "edt r=5 signed": {"encoding": "edt", "radius": 5, "channels": "signed"},
    "gaussian s=3 signed": {"encoding": "gaussian", "sigma": 3, "channels": "signed"},
    "uptake r=5 u=15 vox": {"encoding": "uptake", "radius": 5, "uptake_radius": 15},  # the autopet preset's
}


def _time(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of fn() in ms (CUDA synchronised around each call)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run(size: int, device: torch.device, warmup: int, repeats: int, n_clicks: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    shape = (size, size, size)
    image = MetaTensor(torch.rand(2, *shape), affine=torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0]))).to(device)
    clicks = {k: rng.uniform(0, size - 1, (n_clicks, 3)) for k in ("tumor", "background")}
    zeros = (2, *shape)
    rows = [("baseline: cat zeros", device.type,
             _time(lambda: torch.cat([image.as_tensor(), torch.zeros(zeros, device=device)]), device, warmup, repeats),
             _time(lambda: torch.zeros(zeros, device=device), device, warmup, repeats))]
    for name, cfg in CONFIGS.items():
        enc = EncodeClicks(**cfg)
        full = _time(lambda: enc(image, clicks), device, warmup, repeats)
        chans = _time(lambda: enc.click_channels(image, clicks), device, warmup, repeats)
        rows.append((name, device.type, full, chans))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=192, help="patch edge length (voxels)")
    ap.add_argument("--clicks", type=int, default=10, help="clicks of each kind")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: CPU, plus CUDA when available")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] if args.device in ("auto", "cpu") else []
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        devices.append(torch.device("cuda"))
    rows = []
    for dev in devices:
        warm = args.warmup if dev.type == "cpu" else max(args.warmup, 5)
        reps = args.repeats if dev.type == "cpu" else max(args.repeats, 50)
        rows += run(args.size, dev, warm, reps, args.clicks, args.seed)
    target = {"cpu": 150.0, "cuda": 5.0}
    print(f"{args.clicks}+{args.clicks} clicks, {args.size}^3 patch, 2 image channels, CPU threads={args.threads}, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '0')}")
    print(f"{'encoding':<22}{'device':<8}{'full ms':>10}{'channels ms':>13}{'target ms':>11}  ok")
    for name, dev, full, chans in rows:
        ok = "yes" if full <= target[dev] else "NO"
        print(f"{name:<22}{dev:<8}{full:>10.2f}{chans:>13.2f}{target[dev]:>11.0f}  {ok}")


if __name__ == "__main__":
    main()
