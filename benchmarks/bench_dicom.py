"""Time and peak memory of DICOM in and out at scanner scale: writing a PET/CT study, reading it
(pairing, SUV, CT resampled onto the PET grid) and writing / reading the DICOM SEG of a mask.

Each stage runs in a fresh subprocess, so its peak resident memory (ru_maxrss) is its own. The
study is synthetic (random SUV and HU: content does not change the cost): PET 400x400x963 at
2.04x2.04x2 mm and CT 512x512x2000 over the same field of view, as the autoPET grid and a
scanner's CT; the mask has lesions on --lesion-slices PET slices.

    python benchmarks/bench_dicom.py --out /tmp/bench_dicom                       # full scale
    python benchmarks/bench_dicom.py --out /tmp/b --pet 128 128 200 --ct 256 256 400   # quick
Prints a markdown table (stage, seconds, peak RSS GB, files/frames, size).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np


def affine_for(shape, fov_mm) -> np.ndarray:
    spacing = [f / n for f, n in zip(fov_mm, shape)]
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = [fov_mm[0] / 2, fov_mm[1] / 2, -fov_mm[2]]
    return affine


def stage_write(out: Path, pet_shape, ct_shape, fov) -> dict:
    from petclick.io.dicom_export import StudyInfo, write_ct_series, write_pet_series
    from petclick.io.dicom_suv import SuvParameters
    from petclick.io.images import Volume

    rng = np.random.default_rng(0)
    t = datetime(2024, 1, 2, 10, 0, 0)
    info = StudyInfo("bench", "bench", "bench^", t - timedelta(hours=1))
    params = SuvParameters(75.0, 300e6, 6586.2, t - timedelta(minutes=60), t, "START")
    pet = Volume(rng.gamma(2.0, 1.0, pet_shape).astype(np.float32), affine_for(pet_shape, fov))
    n_pet = len(write_pet_series(out / "PT", pet, info, params)[0])
    del pet
    ct = Volume(rng.integers(-1000, 1500, ct_shape, dtype=np.int16).astype(np.float32), affine_for(ct_shape, fov))
    n_ct = len(write_ct_series(out / "CT", ct, info, t))
    return {"files": n_pet + n_ct}


def stage_read(out: Path) -> dict:
    from petclick.io.dicom_study import load_dicom_case

    case = load_dicom_case(out)
    return {"pet": list(case.case.pet.array.shape), "ct_native": list(case.ct_native_shape)}


def stage_seg(out: Path, lesion_slices: int) -> dict:
    from petclick.io.dicom_seg import read_seg, write_seg
    from petclick.io.dicom_study import scan_folder

    pet_ref = next(s for s in scan_folder(out) if s.modality == "PT")
    import pydicom

    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((out / "PT").glob("*.dcm"))]
    shape = (int(headers[0].Columns), int(headers[0].Rows), len(headers))
    mask = np.zeros(shape, np.uint8)
    k0 = shape[2] // 2 - lesion_slices // 2
    mask[shape[0] // 3: shape[0] // 3 + 40, shape[1] // 3: shape[1] // 3 + 40, k0: k0 + lesion_slices] = 1
    t0 = time.perf_counter()
    path = write_seg(out / "mask.seg.dcm", mask, headers)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = read_seg(path, headers)
    t_read = time.perf_counter() - t0
    assert np.array_equal(back, mask), "SEG round trip differs"
    return {"series": pet_ref.series_uid[-8:], "seg_write_s": t_write, "seg_read_s": t_read,
            "seg_mb": path.stat().st_size / 1e6, "frames": lesion_slices}


def run_stage(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--stage", name, "--out", str(args.out), "--pet", *map(str, args.pet),
           "--ct", *map(str, args.ct), "--lesion-slices", str(args.lesion_slices)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"stage {name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pet", type=int, nargs=3, default=[400, 400, 963])
    p.add_argument("--ct", type=int, nargs=3, default=[512, 512, 2000])
    p.add_argument("--lesion-slices", type=int, default=100)
    p.add_argument("--stage", choices=["write", "read", "seg"], default=None)
    args = p.parse_args()
    fov = (816.0, 816.0, 2.0 * args.pet[2])
    if args.stage:
        t0 = time.perf_counter()
        stage = {"write": lambda: stage_write(args.out, args.pet, args.ct, fov), "read": lambda: stage_read(args.out),
                 "seg": lambda: stage_seg(args.out, args.lesion_slices)}[args.stage]
        result = stage()
        result["seconds"] = time.perf_counter() - t0
        result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(json.dumps(result))
        return
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    rows = [("write PET + CT series", run_stage("write", args))]
    size_gb = sum(f.stat().st_size for f in args.out.rglob("*.dcm")) / 1e9
    rows.append(("read study (pair, SUV, CT -> PET grid)", run_stage("read", args)))
    seg = run_stage("seg", args)
    print(f"PET {'x'.join(map(str, args.pet))}, CT {'x'.join(map(str, args.ct))}, {rows[0][1]['files']} files, "
          f"{size_gb:.3f} GB on disk\n")
    print("| stage | seconds | peak RSS (GB) |\n| --- | ---: | ---: |")
    for name, r in rows:
        print(f"| {name} | {r['seconds']:.1f} | {r['peak_rss_gb']:.2f} |")
    print(f"| SEG write ({seg['frames']} lesion slices, {seg['seg_mb']:.2f} MB) | {seg['seg_write_s']:.2f} | "
          f"{seg['peak_rss_gb']:.2f} |")
    print(f"| SEG read back (equal mask) | {seg['seg_read_s']:.2f} | {seg['peak_rss_gb']:.2f} |")


if __name__ == "__main__":
    main()
