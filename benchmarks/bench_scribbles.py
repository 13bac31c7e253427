"""autoPET V scribble step speed on a whole-body phantom, and encoding hundreds of scribble points.

Part 1: one corrective-scribble step (petclick.clicks.scribbles.scribble_step: FP/FN regions, the
largest axial component of each, both strokes, the choice) on a 400x400x326 phantom case
(petclick.phantoms.generate_case, seed 5: 17 lesions) for three previous predictions:
`suv-threshold` (PET > 4, large physiological false positives and faint missed lesions), `dilated-missing` (the label
dilated by one voxel with its largest lesion removed: thin shells and one missed lesion) and
`perfect` (prediction = label). Every strategy and both labellings; median of --repeats calls.
Arrays in memory (NIfTI reading is not part of the step; the `cli` row times `petclick
simulate-scribbles` on uncompressed .nii files, reading and process start included, and the
`startup` row `petclick --help` alone). Target (issue 16): <= 1 s.

Part 2: EncodeClicks (petclick.clicks.encoding) with scribble voxels as click points: N points
per kind (strokes of up to 40 voxels on random slices) into volumes of the --encode-shapes
(default: the demo's 48x48x64 cases, 200x200x326, a 192^3 patch and the full --shape volume),
median over --repeats calls, torch on --threads CPU threads; the `stroke` encoding (the Gaussian
blur of the stroke mask, summed) beside the click encodings.

    python benchmarks/bench_scribbles.py
    python benchmarks/bench_scribbles.py --repeats 3 --points 100 300 1000 --threads 1
    python benchmarks/bench_scribbles.py --encoding-only --points 100 500 2000 --encode-shapes 48 48 64 200 200 326
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from scipy import ndimage

from petclick.clicks.encoding import EncodeClicks
from petclick.clicks.scribbles import LABELLINGS, scribble_step
from petclick.clicks.strokes import STRATEGIES
from petclick.io.images import save_volume
from petclick.phantoms import generate_case

ENCODINGS = {"edt r=5 vox": {"encoding": "edt", "radius": 5},
             "disk r=3 vox": {"encoding": "disk", "radius": 3},
             "gaussian s=3": {"encoding": "gaussian", "sigma": 3},
             "stroke s=2": {"encoding": "stroke", "sigma": 2}}


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def predictions(case) -> dict[str, np.ndarray]:
    label = case.label != 0
    lab, n = ndimage.label(label, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    dilated = ndimage.binary_dilation(label)
    if n:
        dilated &= lab != int(np.argmax(sizes))
    return {"suv-threshold": np.asarray(case.pet > 4.0), "dilated-missing": dilated, "perfect": label.copy()}


def bench_steps(case, repeats: int) -> list[tuple]:
    label = case.label != 0
    rows = []
    for name, pred in predictions(case).items():
        fp, fn = int(np.count_nonzero(pred & ~label)), int(np.count_nonzero(label & ~pred))
        for strategy in sorted(STRATEGIES):
            for labelling in sorted(LABELLINGS):
                step = scribble_step(pred, label, strategy, labelling=labelling)
                ms = median_ms(lambda: scribble_step(pred, label, strategy, labelling=labelling), repeats)
                rows.append((name, fp, fn, strategy, labelling, step.kind or "-", len(step.points), ms))
    return rows


def bench_cli(case, repeats: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        affine = np.diag([*case.spacing, 1.0]) if hasattr(case, "spacing") else np.eye(4)
        save_volume(tmp / "label.nii", case.label, affine, np.uint8)
        save_volume(tmp / "pred.nii", predictions(case)["dilated-missing"], affine, np.uint8)
        cmd = [sys.executable, "-m", "petclick", "simulate-scribbles", "--label", str(tmp / "label.nii"),
               "--pred", str(tmp / "pred.nii"), "--strategy", "centerline", "--out", str(tmp / "s.json")]
        step = median_ms(lambda: subprocess.run(cmd, check=True, capture_output=True), repeats)
        start = median_ms(lambda: subprocess.run([sys.executable, "-m", "petclick", "--help"], check=True,
                                                 capture_output=True), repeats)
        return step, start


def scribble_points(shape, n: int, rng: np.random.Generator, stroke: int = 40) -> np.ndarray:
    """n voxels on strokes of `stroke` voxels (at most a third of the in-plane size), each a straight
    run on a random axial slice."""
    stroke = max(2, min(stroke, shape[0] // 3, shape[1] // 3))
    pts = []
    while len(pts) < n:
        start = rng.integers([stroke, stroke, 0], [shape[0] - stroke, shape[1] - stroke, shape[2]])
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction)
        for t in range(stroke):
            pts.append((start[0] + t * direction[0], start[1] + t * direction[1], start[2]))
    return np.rint(np.array(pts[:n])).astype(np.float64)


def bench_encoding(points: list[int], repeats: int, shapes, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    rows = []
    for shape in shapes:
        where = "x".join(str(s) for s in shape)
        image = MetaTensor(torch.zeros(2, *shape), affine=torch.diag(torch.tensor([2.04, 2.04, 3.0, 1.0])))
        for n in points:
            clicks = {k: scribble_points(shape, n, rng) for k in ("tumor", "background")}
            for name, cfg in ENCODINGS.items():
                enc = EncodeClicks(**cfg)
                enc.click_channels(image, clicks)  # warm-up
                chans = median_ms(lambda: enc.click_channels(image, clicks), repeats)
                full = median_ms(lambda: enc(image, clicks), repeats)
                rows.append((where, n, name, chans, full))
        del image
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(400, 400, 326))
    ap.add_argument("--seed", type=int, default=5, help="phantom seed (default 5)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--points", type=int, nargs="+", default=(100, 300, 1000), help="scribble voxels per kind")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for the encoding (default 1)")
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI row")
    ap.add_argument("--encoding-only", action="store_true", help="only part 2 (no phantom, no step timing)")
    ap.add_argument("--encode-shapes", type=int, nargs="+", default=None, metavar="X Y Z",
                    help="volumes of part 2, three numbers each (default 48 48 64 200 200 326 192 192 192 and --shape)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    flat = args.encode_shapes or [48, 48, 64, 200, 200, 326, 192, 192, 192, *args.shape]
    if len(flat) % 3:
        ap.error("--encode-shapes takes three numbers per volume")
    shapes = [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]
    if args.encoding_only:
        encoding_table(args, shapes)
        return

    t0 = time.perf_counter()
    case = generate_case("fdg_bench_1", seed=args.seed, shape=tuple(args.shape), clicks=False)
    n_lesions = ndimage.label(case.label != 0, structure=np.ones((3, 3, 3)))[1]
    print(f"phantom {tuple(args.shape)} seed {args.seed}: {n_lesions} lesions, "
          f"{int(np.count_nonzero(case.label))} lesion voxels (generated in {time.perf_counter() - t0:.1f} s)\n")

    print(f"{'prediction':<16}{'FP vox':>10}{'FN vox':>9}  {'strategy':<11}{'labelling':<10}{'added':<11}"
          f"{'voxels':>7}{'ms':>9}")
    worst = 0.0
    for name, fp, fn, strategy, labelling, kind, n, ms in bench_steps(case, args.repeats):
        worst = max(worst, ms)
        print(f"{name:<16}{fp:>10}{fn:>9}  {strategy:<11}{labelling:<10}{kind:<11}{n:>7}{ms:>9.1f}")
    print(f"slowest step: {worst:.0f} ms (target <= 1000 ms)")
    if not args.no_cli:
        step, start = bench_cli(case, max(1, args.repeats // 2))
        print(f"cli (dilated-missing, centerline, .nii read + step + JSON write, process start included): "
              f"{step:.0f} ms; startup (petclick --help): {start:.0f} ms")

    encoding_table(args, shapes)


def encoding_table(args, shapes) -> None:
    print(f"\nencoding scribble points as clicks (torch threads {args.threads}; ms = median of {args.repeats}; "
          f"channels = the 2 click channels alone, full = appended to a 2-channel image)")
    print(f"{'volume':<13}{'points/kind':>12}  {'encoding':<15}{'channels ms':>12}{'full ms':>10}")
    for where, n, name, chans, full in bench_encoding(list(args.points), args.repeats, shapes, args.seed):
        print(f"{where:<13}{n:>12}  {name:<15}{chans:>12.1f}{full:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
