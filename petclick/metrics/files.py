"""Scoring saved predictions against ground-truth files (what `petclick evaluate` reads).

    GT DIR:   <case>.nii.gz                          (the labelsTr layout)
    PRED DIR: <case>_pred<k>.nii.gz, k = 0..N-1      (one file per protocol step; N = 11 for
                                                      autopet-iv, 6 by default for autopet-v)
          or  <case>.nii.gz                          (one prediction, for a model that ignores clicks)

A single prediction is scored once and taken as the same for all N steps (its AUC is N-1 times
the metric, its final value the metric), so it sits in the same tables and curves as interactive
runs. When both layouts exist for a case the step files are used. Files are paired with ground
truth by case id (the file name), never by position in separately sorted lists.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from petclick.core.atomic import is_temp_name
from petclick.core.errors import InputError
from petclick.io.images import Volume, check_same_grid, load_volume
from petclick.metrics.aggregate import N_STEPS
from petclick.metrics.editions import edition

NIFTI_SUFFIXES = (".nii.gz", ".nii")
STEP_FILE = re.compile(r"^(?P<case>.+)_pred(?P<step>\d+)$")


def _stem(path: Path) -> str | None:
    if is_temp_name(path) or path.name.startswith("."):
        return None                      # a run killed mid-write leaves only such dot-files
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def find_ground_truth(gt_dir: str | Path) -> dict[str, Path]:
    """`<case>.nii[.gz]` files of the GT folder by case id."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise InputError(gt_dir, "ground-truth folder not found")
    return {s: p for p in sorted(gt_dir.iterdir()) if (s := _stem(p)) is not None}


def find_predictions(pred_dir: str | Path) -> dict[str, dict]:
    """Prediction files by case: {"steps": {k: path}, "single": path | None}."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction folder not found")
    out: dict[str, dict] = {}
    for p in sorted(pred_dir.iterdir()):
        stem = _stem(p)
        if stem is None:
            continue
        m = STEP_FILE.match(stem)
        if m:
            out.setdefault(m["case"], {"steps": {}, "single": None})["steps"][int(m["step"])] = p
        else:
            out.setdefault(stem, {"steps": {}, "single": None})["single"] = p
    return out


def step_files(case: str, found: dict, pred_dir: str | Path, n_steps: int = N_STEPS) -> list[tuple[int | None, Path]]:
    """[(step, path)] for steps 0..n_steps-1, or [(None, path)] for a single prediction.

    A step set with any of 0..n_steps-1 missing (or extra steps) raises InputError naming the files.
    """
    steps = found["steps"]
    if steps:
        missing = [k for k in range(n_steps) if k not in steps]
        extra = sorted(k for k in steps if k >= n_steps)
        if missing:
            names = ", ".join(f"{case}_pred{k}.nii.gz" for k in missing)
            raise InputError(Path(pred_dir) / f"{case}_pred{missing[0]}.nii.gz",
                             f"prediction set of {case} lacks step files {names} (steps 0..{n_steps - 1} are required)")
        if extra:
            raise InputError(steps[extra[0]], f"unexpected step {extra[0]} (steps 0..{n_steps - 1} are scored)")
        return [(k, steps[k]) for k in range(n_steps)]
    return [(None, found["single"])]


def require_binary(volume: Volume, what: str) -> np.ndarray:
    """Boolean mask of a 0/1 volume; any other value raises InputError naming the file."""
    a = volume.array
    bad = (a != 0) & (a != 1)
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in np.unique(a[bad])[:5])
        raise InputError(volume.path, f"{what} must be binary (0/1), found values {shown}")
    return a != 0


def evaluate_case_files(case: str, gt_path: Path, files: list[tuple[int | None, Path]], tracer: str = "unknown",
                        n_steps: int = N_STEPS, keep_steps: tuple[int, ...] = (),
                        protocol: str = "autopet-iv") -> tuple[list[dict], Volume, dict]:
    """Score one case's prediction files with the edition's metrics; returns (rows, GT volume, {step: mask} for `keep_steps`)."""
    gt_vol = load_volume(gt_path, dtype=None)
    gt = require_binary(gt_vol, "ground truth")
    score = edition(protocol).scorer(gt, gt_vol.spacing)
    rows: list[dict] = []
    kept: dict[int, np.ndarray] = {}
    for step, path in files:
        pred_vol = load_volume(path, dtype=None)
        check_same_grid(gt_vol, pred_vol, "prediction")
        pred = require_binary(pred_vol, "prediction")
        metrics = score(pred)
        steps = range(n_steps) if step is None else [step]
        for k in steps:
            rows.append({"case": case, "tracer": tracer, "step": k, **metrics, "source": path.name})
            if k in keep_steps:
                kept[k] = pred
    return rows, gt_vol, kept
