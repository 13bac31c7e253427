"""The challenge's lesion metrics: Dice, false-positive and false-negative volume (mL).

Definitions (autoPET, see DESIGN.md):
- Dice on binary masks; NaN when the ground truth is empty.
- FPV: total volume of predicted connected components (18-connectivity) sharing no voxel with
  the ground truth; 0 for an empty prediction.
- FNV: total volume of ground-truth components (18-connectivity) sharing no voxel with the
  prediction; NaN when the ground truth is empty.
- Voxel volume from the header spacing: sx*sy*sz/1000 mL.

Vectorised: the work is cropped to the bounding box of pred | gt (components never leave it),
each mask is labelled once with cc3d, and component sizes and overlap flags come from bincounts
over the foreground voxels only, never a per-component pass over the volume.
"""

from __future__ import annotations

from typing import Sequence

import cc3d
import numpy as np

from petclick.io.images import voxel_volume_ml

CONNECTIVITY = 18


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every True voxel; None for an empty mask."""
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(np.any(mask, axis=other))
        if idx.size == 0:
            return None
        slices.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(slices)


def label_components(mask: np.ndarray, connectivity: int = CONNECTIVITY) -> tuple[np.ndarray, int]:
    """Connected components of a boolean mask (cc3d): labels 1..N and N.

    max_labels is bounded by the foreground count, so cc3d picks the smallest label dtype.
    """
    n_fg = int(np.count_nonzero(mask))
    if n_fg == 0:
        return np.zeros(mask.shape, np.uint8), 0
    data = np.ascontiguousarray(mask).view(np.uint8)
    labels, n = cc3d.connected_components(data, connectivity=connectivity, return_N=True, max_labels=n_fg)
    return labels, int(n)


def _unmatched_voxels(labels: np.ndarray, n: int, own: np.ndarray, overlap: np.ndarray) -> tuple[int, int]:
    """Voxel count and number of the components (labels 1..n of `own`) holding no `overlap` voxel."""
    if n == 0:
        return 0, 0
    sizes = np.bincount(labels[own], minlength=n + 1)
    touched = np.bincount(labels[overlap], minlength=n + 1) > 0
    unmatched = ~touched
    unmatched[0] = False
    return int(sizes[unmatched].sum()), int(np.count_nonzero(unmatched))


def lesion_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | np.ndarray,
                   connectivity: int = CONNECTIVITY) -> dict[str, float]:
    """Dice, FPV and FNV (mL) of one binary prediction against one binary ground truth.

    `spacing` is (sx, sy, sz) in mm or a 4x4 affine. Non-zero voxels count as foreground (call
    check_binary / threshold probabilities before). Extra keys (volumes, component counts) help
    reading a case: gt_ml, pred_ml, n_gt_lesions, n_pred_components, n_fp_components, n_fn_lesions.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    pred = pred if pred.dtype == bool else pred != 0
    gt = gt if gt.dtype == bool else gt != 0
    vox = voxel_volume_ml(spacing)
    box = _bbox(pred | gt)
    if box is None:
        return _result(np.nan, 0.0, np.nan, 0, 0, 0, 0, 0, 0)
    p, g = pred[box], gt[box]
    n_pred, n_gt = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    both = p & g
    inter = int(np.count_nonzero(both))
    dice = 2.0 * inter / (n_pred + n_gt) if n_gt else np.nan
    lp, np_ = label_components(p, connectivity)
    fp_vox, n_fp = _unmatched_voxels(lp, np_, p, both)
    del lp
    if n_gt:
        lg, ng = label_components(g, connectivity)
        fn_vox, n_fn = _unmatched_voxels(lg, ng, g, both)
        fnv = fn_vox * vox
    else:
        ng, n_fn, fnv = 0, 0, np.nan
    return _result(dice, fp_vox * vox, fnv, n_gt * vox, n_pred * vox, ng, np_, n_fp, n_fn)


def _result(dice, fpv, fnv, gt_ml, pred_ml, n_gt, n_pred, n_fp, n_fn) -> dict[str, float]:
    return {"dice": float(dice), "fpv_ml": float(fpv), "fnv_ml": float(fnv),
            "gt_ml": float(gt_ml), "pred_ml": float(pred_ml), "n_gt_lesions": int(n_gt),
            "n_pred_components": int(n_pred), "n_fp_components": int(n_fp), "n_fn_lesions": int(n_fn)}
