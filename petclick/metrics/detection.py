"""autoPET V lesion detection: the Detection-Matching Metric (DMM) and this edition's Dice rule.

Definitions (the challenge's MetricEvaluator, autoPETV metrics.py; see notes/AUTOPETV.md):
- Lesions are the 18-connected components of the ground truth, predicted lesions those of the
  prediction.
- A ground-truth lesion is a true positive when any predicted component overlaps it with
  IoU >= 0.1 (IoU = intersection / union as float64, like the official code); the others are
  false negatives. A predicted component matching no lesion at IoU >= 0.1 is a false positive.
  Matching is many-to-many: one component may match several lesions and one lesion several
  components, and nothing is counted twice.
- DMM = F1 = 2TP / (2TP + FP + FN); NaN when the ground truth has no lesion, 0 when TP = 0.
- Dice = 2|P & G| / (|P| + |G|), 1 when both masks are empty (the interactive loop's rule: a
  lesion-free case scores 1 for an empty prediction and 0 for any false positive).
- FPV / FNV as in autoPET IV (components sharing no voxel), from petclick.metrics.lesion.

Each mask is labelled once inside its bounding box; pair intersections come from one
np.unique over the voxels where both masks are foreground (pair key = gt label x (n_pred + 1)
+ pred label), component sizes from bincounts, so no per-component pass over the volume.
DetectionScorer labels a ground truth once for all steps of a case.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from petclick.metrics.lesion import CONNECTIVITY, LabelledMask, LesionScorer, label_mask

IOU_THRESHOLD = 0.1


def f1_score(tp: int, fp: int, fn: int) -> float:
    """The DMM of lesion counts: NaN without ground-truth lesions, 0 without a true positive."""
    if tp + fn == 0:
        return float("nan")
    if tp == 0:
        return 0.0
    return 2.0 * tp / (2.0 * tp + fp + fn)


def overlap_pairs(gt: LabelledMask, pred: LabelledMask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt label, pred label, intersection voxels) of every pair of components sharing a voxel."""
    empty = np.zeros(0, np.int64)
    if gt.n == 0 or pred.n == 0:
        return empty, empty, empty
    inter = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(gt.box, pred.box))
    if any(s.start >= s.stop for s in inter):
        return empty, empty, empty
    lg = gt.labels[tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(inter, gt.box))]
    lp = pred.labels[tuple(slice(s.start - b.start, s.stop - b.start) for s, b in zip(inter, pred.box))]
    both = (lg != 0) & (lp != 0)
    keys, counts = np.unique(lg[both].astype(np.int64) * (pred.n + 1) + lp[both], return_counts=True)
    return keys // (pred.n + 1), keys % (pred.n + 1), counts.astype(np.int64)


def detection_counts(gt: LabelledMask, pred: LabelledMask, threshold: float = IOU_THRESHOLD) -> tuple[int, int, int]:
    """(TP, FP, FN) lesion counts of labelled masks under the IoU >= threshold matching rule."""
    g, p, inter = overlap_pairs(gt, pred)
    iou = inter / (gt.sizes[g] + pred.sizes[p] - inter)
    hit = iou >= threshold
    tp = int(np.unique(g[hit]).size)
    return tp, pred.n - int(np.unique(p[hit]).size), gt.n - tp


class DetectionScorer:
    """Scores many predictions against one ground truth: Dice (empty/empty = 1), DMM and its counts, FPV, FNV.

    Returns LesionScorer's keys (with `dice` by this edition's rule) plus `dmm`, `dmm_tp`, `dmm_fp`
    and `dmm_fn`. Each prediction is labelled once and that labelling serves FPV and the DMM.
    """

    def __init__(self, gt: np.ndarray, spacing: Sequence[float] | np.ndarray, connectivity: int = CONNECTIVITY,
                 threshold: float = IOU_THRESHOLD):
        self.lesion = LesionScorer(gt, spacing, connectivity)
        self.threshold = float(threshold)

    def __call__(self, pred: np.ndarray) -> dict[str, float]:
        lesion = self.lesion
        pred = lesion.check_prediction(pred)
        components = label_mask(pred, lesion.connectivity)
        out = lesion.score(pred, components)
        tp, fp, fn = detection_counts(lesion.components, components, self.threshold)
        if lesion.n_gt == 0:  # LesionScorer's Dice is NaN here; this edition scores 1 (empty) or 0
            out["dice"] = 1.0 if components.voxels == 0 else 0.0
        out.update({"dmm": f1_score(tp, fp, fn), "dmm_tp": tp, "dmm_fp": fp, "dmm_fn": fn})
        return out


def detection_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | np.ndarray = (1.0, 1.0, 1.0),
                      connectivity: int = CONNECTIVITY, threshold: float = IOU_THRESHOLD) -> dict[str, float]:
    """Dice (empty/empty = 1), DMM with TP/FP/FN, FPV and FNV of one binary prediction."""
    return DetectionScorer(gt, spacing, connectivity, threshold)(pred)
