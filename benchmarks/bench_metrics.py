"""Speed of the lesion metrics on a whole-body-sized pair (target: <= 1 s on one core).

    python benchmarks/bench_metrics.py [--shape 400 400 326] [--components 50] [--repeats 3]

Builds a ground truth and a prediction with N ball-shaped components each (radius 2-12 voxels,
spread over the volume; about half of the predicted balls overlap a lesion, the rest are false
positives, and some lesions are missed), then times `lesion_metrics`, autoPET V's
`detection_metrics` (Dice, DMM, FPV, FNV from one labelling per mask) and, for reference, the
suv-threshold predictor's 11 protocol steps on a PET built from the same balls, the whole
protocol (predictor + metrics) and one per-case MIP picture. Prints a table.
"""

from __future__ import annotations

import argparse
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from petclick.metrics.detection import detection_metrics  # noqa: E402
from petclick.metrics.lesion import lesion_metrics  # noqa: E402


def balls(shape, centres, radii) -> np.ndarray:
    """Paint balls through their bounding boxes (no full-volume pass per ball)."""
    m = np.zeros(shape, bool)
    for c, r in zip(centres, radii):
        lo = np.maximum(c - r, 0)
        hi = np.minimum(c + r + 1, shape)
        grid = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        d2 = sum((g - ci) ** 2 for g, ci in zip(grid, c))
        m[tuple(slice(a, b) for a, b in zip(lo, hi))] |= d2 <= r * r
    return m


def make_pair(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    margin = 14
    gt_c = rng.integers(margin, np.array(shape) - margin, (n, 3))
    gt_r = rng.integers(2, 13, n)
    hit = rng.random(n) < 0.5
    pred_c = np.where(hit[:, None], gt_c + rng.integers(-2, 3, (n, 3)), rng.integers(margin, np.array(shape) - margin, (n, 3)))
    pred_r = rng.integers(2, 13, n)
    return balls(shape, pred_c, pred_r), balls(shape, gt_c, gt_r)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, min(times), float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[400, 400, 326])
    ap.add_argument("--components", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    shape = tuple(args.shape)
    pred, gt = make_pair(shape, args.components)
    spacing = (2.04, 2.04, 3.0)
    m, best, med = timed(lambda: lesion_metrics(pred, gt, spacing), args.repeats)
    d, best_d, med_d = timed(lambda: detection_metrics(pred, gt, spacing), args.repeats)

    # Same pair, but compact (all components in one corner): the bounding-box crop at work.
    sub = tuple(s // 3 for s in shape)
    pred_c, gt_c = make_pair(sub, args.components, seed=1)
    pc, gc = np.zeros(shape, bool), np.zeros(shape, bool)
    pc[: sub[0], : sub[1], : sub[2]] = pred_c
    gc[: sub[0], : sub[1], : sub[2]] = gt_c
    _, best_c, med_c = timed(lambda: lesion_metrics(pc, gc, spacing), args.repeats)

    from petclick.io.clickfile import Clicks
    from petclick.io.images import CaseVolumes, Volume
    from petclick.inference.predictors import SuvThresholdPredictor
    pet = np.where(gt | pred, 5.0, 1.0).astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    case = CaseVolumes(Volume(pet, affine), Volume(pet, affine))
    idx = np.argwhere(gt[::8, ::8, ::8]) * 8
    clicks = Clicks([tuple(p) for p in idx[:10]], [])
    predictor = SuvThresholdPredictor()

    def eleven_steps():
        predictor._cache = None
        return [predictor.predict(case, clicks.first(k)) for k in range(11)]
    _, best_p, med_p = timed(eleven_steps, max(1, args.repeats - 1))

    from petclick.inference.protocol import run_protocol
    labelled = CaseVolumes(Volume(pet, affine), Volume(pet, affine), Volume(gt.astype(np.uint8), affine))

    def protocol():
        predictor._cache = None
        return run_protocol(predictor, labelled, clicks)
    _, best_r, med_r = timed(protocol, max(1, args.repeats - 1))

    import tempfile
    from petclick.metrics.plots import save_case_mip
    with tempfile.TemporaryDirectory() as tmp:
        _, best_m, med_m = timed(lambda: save_case_mip(f"{tmp}/mip.png", pet, affine, gt, {"step 0": pred, "step 10": gt}),
                                 max(1, args.repeats - 1))

    print(f"shape {shape}, {args.components} components per mask, 1 thread "
          f"(pred {m['n_pred_components']} / GT {m['n_gt_lesions']} components after merging)")
    print("| what | best s | median s |")
    print("| --- | --- | --- |")
    print(f"| lesion_metrics, components spread over the volume | {best:.3f} | {med:.3f} |")
    print(f"| lesion_metrics, components in one corner (crop) | {best_c:.3f} | {med_c:.3f} |")
    print(f"| detection_metrics (autoPET V: + DMM), spread | {best_d:.3f} | {med_d:.3f} |")
    print(f"| suv-threshold predictor, 11 protocol steps | {best_p:.3f} | {med_p:.3f} |")
    print(f"| run_protocol: suv-threshold + metrics, 11 steps | {best_r:.3f} | {med_r:.3f} |")
    print(f"| per-case MIP PNG, two panels | {best_m:.3f} | {med_m:.3f} |")
    print(f"target: lesion_metrics <= 1 s -> {'met' if best <= 1.0 else 'NOT met'}"
          f" (Dice {m['dice']:.3f}, FPV {m['fpv_ml']:.1f} mL, FNV {m['fnv_ml']:.1f} mL)")
    print(f"target: detection_metrics <= 1 s -> {'met' if best_d <= 1.0 else 'NOT met'}"
          f" (DMM {d['dmm']:.3f}: TP {d['dmm_tp']}, FP {d['dmm_fp']}, FN {d['dmm_fn']})")


if __name__ == "__main__":
    main()
