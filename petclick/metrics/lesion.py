"""The challenge's lesion metrics: Dice, false-positive and false-negative volume (mL).

Definitions (autoPET's; docs/evaluation.md):
- Dice on binary masks; NaN when the ground truth is empty.
- FPV: total volume of predicted connected components (18-connectivity) sharing no voxel with
  the ground truth; 0 for an empty prediction.
- FNV: total volume of ground-truth components (18-connectivity) sharing no voxel with the
  prediction; NaN when the ground truth is empty.
- Voxel volume from the header spacing: sx*sy*sz/1000 mL.

Vectorised: each mask is labelled once with cc3d inside its own bounding box (components never
leave it), and component sizes and overlap flags come from bincounts over foreground voxels
only, never a per-component pass over the volume. LesionScorer labels a ground truth once for
many predictions (the protocol's 11 steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cc3d
import numpy as np

from petclick.core.boxes import bounding_box

from petclick.io.images import voxel_volume_ml

CONNECTIVITY = 18


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


@dataclass(frozen=True)
class LabelledMask:
    """A mask's connected components, labelled once inside its bounding box.

    `labels` (1..n, 0 = background) covers `box`; `sizes[k]` is the voxel count of component k
    (sizes[0] = 0). An empty mask has box None, n 0 and sizes [0].
    """

    box: tuple[slice, ...] | None
    labels: np.ndarray | None
    n: int
    sizes: np.ndarray

    @property
    def voxels(self) -> int:
        return int(self.sizes.sum())


def label_mask(mask: np.ndarray, connectivity: int = CONNECTIVITY) -> LabelledMask:
    """Label a boolean mask inside its bounding box (components never leave it)."""
    box = bounding_box(mask)
    if box is None:
        return LabelledMask(None, None, 0, np.zeros(1, np.int64))
    sub = mask[box]
    labels, n = label_components(sub, connectivity)
    return LabelledMask(box, labels, n, np.bincount(labels[sub], minlength=n + 1))


def _unmatched_voxels(labels: np.ndarray, n: int, own: np.ndarray, overlap: np.ndarray) -> tuple[int, int]:
    """Voxel count and number of the components (labels 1..n of `own`) holding no `overlap` voxel."""
    if n == 0:
        return 0, 0
    sizes = np.bincount(labels[own], minlength=n + 1)
    touched = np.bincount(labels[overlap], minlength=n + 1) > 0
    unmatched = ~touched
    unmatched[0] = False
    return int(sizes[unmatched].sum()), int(np.count_nonzero(unmatched))


class LesionScorer:
    """Scores many predictions against one ground truth, labelling the ground truth only once.

    The protocol's 11 steps (and `evaluate`'s 11 step files) share one case's ground truth, so its
    components, their sizes and bounding box are computed here once. Each call then labels the
    prediction inside the prediction's bounding box and reads GT overlaps inside the GT's box.
    """

    def __init__(self, gt: np.ndarray, spacing: Sequence[float] | np.ndarray, connectivity: int = CONNECTIVITY):
        gt = np.asarray(gt)
        self.gt = gt if gt.dtype == bool else gt != 0
        self.connectivity = connectivity
        self.voxel_ml = voxel_volume_ml(spacing)
        self.components = label_mask(self.gt, connectivity)
        self.box, self.n_lesions = self.components.box, self.components.n
        self.n_gt = self.components.voxels
        if self.box is not None:
            self.g, self.labels, self.sizes = self.gt[self.box], self.components.labels, self.components.sizes

    def __call__(self, pred: np.ndarray) -> dict[str, float]:
        pred = self.check_prediction(pred)
        return self.score(pred, label_mask(pred, self.connectivity))

    def check_prediction(self, pred: np.ndarray) -> np.ndarray:
        """The prediction as a boolean mask of the ground truth's shape (ValueError otherwise)."""
        pred = np.asarray(pred)
        if pred.shape != self.gt.shape:
            raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {self.gt.shape}")
        return pred if pred.dtype == bool else pred != 0

    def score(self, pred: np.ndarray, components: LabelledMask) -> dict[str, float]:
        """Metrics of a boolean prediction whose components (`label_mask(pred)`) are already labelled."""
        vox = self.voxel_ml
        pbox = components.box
        # False positives: predicted components (labelled inside their box) with no GT voxel.
        n_pred, n_comp, fp_vox, n_fp = components.voxels, components.n, 0, 0
        if pbox is not None:
            p = pred[pbox]
            fp_vox, n_fp = _unmatched_voxels(components.labels, n_comp, p, p & self.gt[pbox])
        if self.box is None:
            return _result(np.nan, fp_vox * vox, np.nan, 0.0, n_pred * vox, 0, n_comp, n_fp, 0)
        # False negatives and Dice: every overlap voxel lies inside the GT box.
        both = pred[self.box] & self.g
        inter = int(np.count_nonzero(both))
        touched = np.bincount(self.labels[both], minlength=self.n_lesions + 1) > 0
        missed = ~touched
        missed[0] = False
        fn_vox, n_fn = int(self.sizes[missed].sum()), int(np.count_nonzero(missed))
        dice = 2.0 * inter / (n_pred + self.n_gt)
        return _result(dice, fp_vox * vox, fn_vox * vox, self.n_gt * vox, n_pred * vox, self.n_lesions, n_comp, n_fp, n_fn)


def lesion_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | np.ndarray,
                   connectivity: int = CONNECTIVITY) -> dict[str, float]:
    """Dice, FPV and FNV (mL) of one binary prediction against one binary ground truth.

    `spacing` is (sx, sy, sz) in mm or a 4x4 affine. Non-zero voxels count as foreground (call
    check_binary / threshold probabilities before). Extra keys (volumes, component counts) help
    reading a case: gt_ml, pred_ml, n_gt_lesions, n_pred_components, n_fp_components, n_fn_lesions.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    return LesionScorer(gt, spacing, connectivity)(pred)


def _result(dice, fpv, fnv, gt_ml, pred_ml, n_gt, n_pred, n_fp, n_fn) -> dict[str, float]:
    return {"dice": float(dice), "fpv_ml": float(fpv), "fnv_ml": float(fnv),
            "gt_ml": float(gt_ml), "pred_ml": float(pred_ml), "n_gt_lesions": int(n_gt),
            "n_pred_components": int(n_pred), "n_fp_components": int(n_fp), "n_fn_lesions": int(n_fn)}
