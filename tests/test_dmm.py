"""autoPET V Detection-Matching Metric: known answers, an independent brute-force oracle, AUC aggregations."""

import math

import numpy as np
import pytest
from scipy import ndimage

from petclick.metrics.aggregate import auc_trapezoid, cohort_summary, dmm_aggregations
from petclick.metrics.detection import DetectionScorer, detection_metrics, f1_score

UNIT = (1.0, 1.0, 1.0)
SHAPE = (40, 40, 3)


def box(lo, hi, shape=SHAPE):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def counts(m):
    return m["dmm_tp"], m["dmm_fp"], m["dmm_fn"]


def test_f1_rules():
    assert math.isnan(f1_score(0, 3, 0))          # no ground-truth lesion
    assert f1_score(0, 2, 5) == 0.0               # no true positive
    assert f1_score(2, 1, 1) == pytest.approx(4 / 6)
    assert f1_score(3, 0, 0) == 1.0


def test_many_to_many_matching():
    a = box((0, 0, 1), (10, 10, 2))                        # GT lesion A, 100 voxels
    b, c = box((20, 0, 1), (25, 4, 2)), box((20, 6, 1), (25, 10, 2))   # GT lesions B and C, 20 voxels each
    d = box((32, 30, 1), (40, 40, 2))                      # GT lesion D, 80 voxels
    gt = a | b | c | d
    p1, p2 = box((0, 0, 1), (10, 4, 2)), box((0, 6, 1), (10, 10, 2))   # two components on A: IoU 0.4 each
    q = box((20, 0, 1), (25, 10, 2))                       # one component across B and C: IoU 0.4 with each
    r = box((39, 39, 1), (40, 40, 2)) | box((39, 20, 1), (40, 30, 2))  # touches D with IoU 1/80 < 0.1
    m = detection_metrics(p1 | p2 | q | r, gt)
    assert (m["n_gt_lesions"], m["n_pred_components"]) == (4, 5)
    # A, B, C matched (several components on one lesion, one component on several lesions); D missed;
    # the two r pieces match nothing. Nobody is counted twice.
    assert counts(m) == (3, 2, 1)
    assert m["dmm"] == pytest.approx(6 / (6 + 2 + 1))


def test_iou_exactly_at_the_threshold_matches():
    gt = box((5, 5, 1), (6, 14, 2))                        # 9-voxel lesion
    at = box((5, 13, 1), (6, 15, 2))                       # 2 voxels, 1 inside: IoU 1 / (9 + 2 - 1) = 0.1
    assert counts(detection_metrics(at, gt)) == (1, 0, 0)
    below = box((5, 13, 1), (6, 16, 2))                    # 3 voxels, 1 inside: IoU 1 / 11
    m = detection_metrics(below, gt)
    assert counts(m) == (0, 1, 1) and m["dmm"] == 0.0
    big = box((0, 0, 0), (10, 10, 3))                      # 300 voxels; 30 inside -> IoU 30 / 300 exactly
    assert counts(detection_metrics(box((0, 0, 0), (10, 1, 3)), big)) == (1, 0, 0)
    assert counts(detection_metrics(box((0, 0, 0), (10, 1, 3)), big, threshold=0.1000001)) == (0, 1, 1)


def test_empty_ground_truth():
    empty = np.zeros(SHAPE, bool)
    none = detection_metrics(empty, empty, (2.0, 2.0, 3.0))
    assert math.isnan(none["dmm"]) and none["dice"] == 1.0 and none["fpv_ml"] == 0.0 and math.isnan(none["fnv_ml"])
    fp = detection_metrics(box((1, 1, 1), (3, 3, 2)), empty, (2.0, 2.0, 3.0))
    assert math.isnan(fp["dmm"]) and fp["dice"] == 0.0 and counts(fp) == (0, 1, 0)
    assert fp["fpv_ml"] == pytest.approx(4 * 12 / 1000)


def test_empty_prediction():
    gt = box((1, 1, 1), (4, 4, 2)) | box((10, 10, 0), (12, 12, 3))
    m = detection_metrics(np.zeros(SHAPE, bool), gt)
    assert counts(m) == (0, 0, 2) and m["dmm"] == 0.0 and m["dice"] == 0.0 and m["fpv_ml"] == 0.0


def test_lesions_are_18_connected():
    gt = np.zeros((6, 6, 6), bool)
    gt[1, 1, 1] = gt[2, 2, 1] = True          # edge neighbours (18-connected): one lesion
    gt[4, 4, 4] = gt[5, 5, 5] = True          # corner neighbours only (26-connected): two lesions
    m = detection_metrics(gt, gt)
    assert m["n_gt_lesions"] == 3 and counts(m) == (3, 0, 0) and m["dmm"] == 1.0


def brute_force(pred, gt, threshold=0.1):
    """Independent oracle: scipy labelling, one explicit IoU per (lesion, component) pair."""
    st = ndimage.generate_binary_structure(3, 2)
    lg, ng = ndimage.label(gt, structure=st)
    lp, npr = ndimage.label(pred, structure=st)
    matched_g, matched_p = set(), set()
    for i in range(1, ng + 1):
        for j in range(1, npr + 1):
            a, b = lg == i, lp == j
            inter = np.count_nonzero(a & b)
            if inter and inter / np.count_nonzero(a | b) >= threshold:
                matched_g.add(i)
                matched_p.add(j)
    return len(matched_g), npr - len(matched_p), ng - len(matched_g)


def test_against_a_brute_force_oracle():
    rng = np.random.default_rng(4)
    for _ in range(40):
        shape = tuple(int(v) for v in rng.integers(5, 16, 3))
        gt = ndimage.binary_dilation(rng.random(shape) < 0.03)
        pred = np.roll(gt, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 3))) | (rng.random(shape) < 0.02)
        assert counts(detection_metrics(pred, gt)) == brute_force(pred, gt)


def test_scorer_labels_the_ground_truth_once_for_many_predictions():
    gt = box((2, 2, 0), (8, 8, 3)) | box((20, 20, 1), (24, 24, 2))
    scorer = DetectionScorer(gt, (2.0, 2.0, 3.0))
    preds = [gt, np.zeros_like(gt), box((2, 2, 0), (8, 8, 3)), box((30, 30, 0), (33, 33, 3))]
    for p in preds:
        assert scorer(p) == detection_metrics(p, gt, (2.0, 2.0, 3.0))
    assert [scorer(p)["dmm"] for p in preds] == [1.0, 0.0, pytest.approx(2 / 3), 0.0]
    with pytest.raises(ValueError, match="shape"):
        scorer(np.zeros((3, 3, 3), bool))


def rows_of(case, tracer, per_step):
    """Rows of one case: per_step is a list of (tp, fp, fn) lesion counts."""
    rows = []
    for k, (tp, fp, fn) in enumerate(per_step):
        rows.append({"case": case, "tracer": tracer, "step": k, "dice": 0.5, "fpv_ml": 0.0,
                     "fnv_ml": math.nan if tp + fn == 0 else 0.0, "gt_ml": 0.0 if tp + fn == 0 else 1.0,
                     "dmm": f1_score(tp, fp, fn), "dmm_tp": tp, "dmm_fp": fp, "dmm_fn": fn})
    return rows


def test_auc_dmm_both_aggregations():
    rows = (rows_of("fdg_a_1", "fdg", [(0, 0, 2), (1, 0, 1), (2, 0, 0)])      # F1 0, 2/3, 1
            + rows_of("fdg_b_1", "fdg", [(0, 4, 0), (0, 2, 0), (0, 0, 0)])    # lesion-free: NaN, FPs pooled
            + rows_of("psma_c_1", "psma", [(1, 1, 0), (1, 0, 0), (1, 0, 0)]))  # F1 2/3, 1, 1
    agg = dmm_aggregations(rows, 3)
    case_a = auc_trapezoid([0, 2 / 3, 1])
    case_c = auc_trapezoid([2 / 3, 1, 1])
    mean = agg["mean_over_cases_with_lesions"]
    assert mean["n"] == 2 and mean["value"] == pytest.approx((case_a + case_c) / 2)
    fdg = agg["pooled_f1_per_tracer"]["fdg"]
    # pooled fdg counts per step: (0, 4, 2) -> 0; (1, 2, 1) -> 2/5; (2, 0, 0) -> 1
    assert fdg["f1_per_step"] == pytest.approx([0.0, 0.4, 1.0]) and fdg["n_cases"] == 2
    assert fdg["auc"] == pytest.approx(auc_trapezoid([0.0, 0.4, 1.0]))
    assert agg["pooled_f1_per_tracer"]["psma"]["auc"] == pytest.approx(case_c)
    assert agg["pooled_f1_mean_over_tracers"]["value"] == pytest.approx((fdg["auc"] + case_c) / 2)
    # all cases pooled: (1, 5, 2) -> 2/9; (2, 2, 1) -> 4/7; (3, 0, 0) -> 1
    assert agg["pooled_f1_all_cases"]["f1_per_step"] == pytest.approx([2 / 9, 4 / 7, 1.0])
    assert all(isinstance(v.get("how", ""), str) for v in agg.values())
    summary = cohort_summary(rows, n_steps=3, metrics=("dice", "dmm", "fpv", "fnv"))
    assert summary["auc_dmm"] == agg
    assert summary["overall"]["dmm_auc"]["n"] == 2
    assert summary["overall"]["dmm_auc"]["mean"] == pytest.approx(mean["value"])
    assert summary["overall"]["dice_auc"]["n"] == 3     # Dice defined on every case in this edition


def test_auc_is_the_unnormalised_trapezoid():
    assert auc_trapezoid([0.2, 0.4, 0.6, 0.8, 1.0, 1.0]) == pytest.approx(np.sum([0.3, 0.5, 0.7, 0.9, 1.0]))
    assert math.isnan(auc_trapezoid([0.5, math.nan, 0.5]))
