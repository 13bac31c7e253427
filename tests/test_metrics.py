"""Lesion metrics and their aggregation, on masks small enough to compute by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from petclick.metrics.aggregate import auc_trapezoid, case_summary, cohort_summary, per_step_stats
from petclick.metrics.lesion import LesionScorer, lesion_metrics

UNIT = (1.0, 1.0, 1.0)  # 1 mm^3 voxels = 0.001 mL


def vol(shape=(8, 8, 8), *points, boxes=()):
    m = np.zeros(shape, np.uint8)
    for p in points:
        m[p] = 1
    for b in boxes:
        m[b] = 1
    return m


def test_overlap_sets_dice_and_no_fp_fn():
    gt = vol(boxes=[np.s_[2:4, 2:4, 2:4]])  # 8 voxels
    pred = vol(boxes=[np.s_[3:5, 3:5, 3:5]])  # 8 voxels, 1 shared
    m = lesion_metrics(pred, gt, UNIT)
    assert m["dice"] == pytest.approx(2 * 1 / 16)
    assert m["fpv_ml"] == 0.0 and m["fnv_ml"] == 0.0
    assert m["n_gt_lesions"] == 1 and m["n_pred_components"] == 1


def test_face_adjacent_but_not_overlapping_counts_as_fp_and_fn():
    # Touching means sharing a voxel: a prediction right next to the lesion misses it.
    gt = vol(boxes=[np.s_[2:4, 2:4, 2:4]])
    pred = vol(boxes=[np.s_[4:6, 2:4, 2:4]])
    m = lesion_metrics(pred, gt, UNIT)
    assert m["dice"] == 0.0
    assert m["fpv_ml"] == pytest.approx(0.008) and m["fnv_ml"] == pytest.approx(0.008)
    assert m["n_fp_components"] == 1 and m["n_fn_lesions"] == 1


def test_corner_touching_voxel_is_a_separate_component_under_18_connectivity():
    gt = vol((5, 5, 5), (1, 1, 1))
    pred = vol((5, 5, 5), (1, 1, 1), (2, 2, 2))  # (2,2,2) touches (1,1,1) only at a corner
    m18 = lesion_metrics(pred, gt, UNIT)
    assert m18["n_pred_components"] == 2
    assert m18["fpv_ml"] == pytest.approx(0.001)  # the corner voxel is its own false-positive component
    assert m18["dice"] == pytest.approx(2 / 3)
    m26 = lesion_metrics(pred, gt, UNIT, connectivity=26)
    assert m26["n_pred_components"] == 1 and m26["fpv_ml"] == 0.0


def test_corner_touching_lesion_voxel_is_a_missed_lesion():
    gt = vol((5, 5, 5), (1, 1, 1), (2, 2, 2))
    pred = vol((5, 5, 5), (1, 1, 1))
    m = lesion_metrics(pred, gt, UNIT)
    assert m["n_gt_lesions"] == 2 and m["n_fn_lesions"] == 1
    assert m["fnv_ml"] == pytest.approx(0.001)


def test_edge_touching_voxels_join_under_18_connectivity():
    gt = vol((5, 5, 5), (1, 1, 1))
    pred = vol((5, 5, 5), (1, 1, 1), (2, 2, 1))  # share an edge with (1,1,1)
    m = lesion_metrics(pred, gt, UNIT)
    assert m["n_pred_components"] == 1 and m["fpv_ml"] == 0.0
    m6 = lesion_metrics(pred, gt, UNIT, connectivity=6)
    assert m6["fpv_ml"] == pytest.approx(0.001)


def test_partly_overlapping_component_counts_whole_as_matched():
    # A predicted component touching the lesion with one voxel is not FP at all, however large.
    gt = vol((10, 10, 10), boxes=[np.s_[0:2, 0:2, 0:2]])
    pred = vol((10, 10, 10), boxes=[np.s_[1:9, 1:9, 1:9]])
    m = lesion_metrics(pred, gt, UNIT)
    assert m["fpv_ml"] == 0.0 and m["fnv_ml"] == 0.0
    assert m["dice"] == pytest.approx(2 * 1 / (512 + 8))


def test_several_components_sum_their_volumes():
    gt = vol((20, 20, 20), boxes=[np.s_[1:3, 1:3, 1:3], np.s_[10:13, 10:13, 10:13], np.s_[16:18, 1:2, 1:2]])
    pred = vol((20, 20, 20), boxes=[np.s_[2:4, 2:4, 2:4],                 # hits lesion 1
                                    np.s_[12:13, 12:13, 12:13],           # hits lesion 2
                                    np.s_[5:7, 15:18, 15:18],             # FP 2*3*3 = 18
                                    np.s_[18:19, 18:19, 0:4]])            # FP 4
    m = lesion_metrics(pred, gt, (2.0, 2.0, 2.0))  # 8 mm^3 voxels
    assert m["n_fp_components"] == 2 and m["n_fn_lesions"] == 1
    assert m["fpv_ml"] == pytest.approx(22 * 0.008)
    assert m["fnv_ml"] == pytest.approx(2 * 0.008)  # lesion 3: 2 voxels
    assert m["gt_ml"] == pytest.approx((8 + 27 + 2) * 0.008)


def test_empty_ground_truth():
    pred = vol(boxes=[np.s_[0:2, 0:2, 0:1]])
    m = lesion_metrics(pred, np.zeros((8, 8, 8), np.uint8), UNIT)
    assert math.isnan(m["dice"]) and math.isnan(m["fnv_ml"])
    assert m["fpv_ml"] == pytest.approx(0.004)
    both = lesion_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), UNIT)
    assert math.isnan(both["dice"]) and math.isnan(both["fnv_ml"]) and both["fpv_ml"] == 0.0


def test_empty_prediction():
    gt = vol(boxes=[np.s_[0:2, 0:2, 0:2]])
    m = lesion_metrics(np.zeros_like(gt), gt, UNIT)
    assert m["dice"] == 0.0 and m["fpv_ml"] == 0.0
    assert m["fnv_ml"] == pytest.approx(0.008)


def test_anisotropic_spacing_and_affine():
    gt = vol(boxes=[np.s_[0:1, 0:1, 0:1]])
    pred = vol(boxes=[np.s_[4:6, 4:5, 4:5]])  # 2 voxels, no overlap
    spacing = (2.0, 3.0, 4.5)  # 27 mm^3 = 0.027 mL per voxel
    m = lesion_metrics(pred, gt, spacing)
    assert m["fpv_ml"] == pytest.approx(0.054) and m["fnv_ml"] == pytest.approx(0.027)
    # The same spacing given as a (permuted, flipped) affine: volumes come from the column norms.
    affine = np.array([[0, 0, -4.5, 10], [2.0, 0, 0, -3], [0, 3.0, 0, 7], [0, 0, 0, 1]])
    m_aff = lesion_metrics(pred, gt, affine)
    assert m_aff["fpv_ml"] == pytest.approx(0.054) and m_aff["fnv_ml"] == pytest.approx(0.027)


def test_bool_and_probability_free_inputs_agree_and_shape_mismatch_raises():
    gt = vol(boxes=[np.s_[1:3, 1:3, 1:3]])
    pred = vol(boxes=[np.s_[2:5, 2:5, 2:5]])
    assert lesion_metrics(pred.astype(bool), gt.astype(bool), UNIT) == lesion_metrics(pred, gt, UNIT)
    with pytest.raises(ValueError, match="shape"):
        lesion_metrics(pred[:-1], gt, UNIT)


def _reference(pred, gt, vox):
    """Straightforward per-component definition with scipy (18-connectivity structure)."""
    s = ndimage.generate_binary_structure(3, 2)
    lp, n_p = ndimage.label(pred, s)
    lg, n_g = ndimage.label(gt, s)
    fp = sum((lp == c).sum() for c in range(1, n_p + 1) if not (gt[lp == c]).any())
    fn = sum((lg == c).sum() for c in range(1, n_g + 1) if not (pred[lg == c]).any())
    dice = 2 * (pred & gt).sum() / (pred.sum() + gt.sum()) if gt.any() else np.nan
    return dice, fp * vox, (fn * vox if gt.any() else np.nan)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.05, 0.5), st.floats(0.05, 0.5))
def test_matches_per_component_reference(seed, p_pred, p_gt):
    rng = np.random.default_rng(seed)
    pred = rng.random((7, 6, 5)) < p_pred
    gt = rng.random((7, 6, 5)) < p_gt
    m = lesion_metrics(pred, gt, (1.5, 1.0, 2.0))
    dice, fpv, fnv = _reference(pred, gt, 0.003)
    np.testing.assert_allclose([m["dice"], m["fpv_ml"], m["fnv_ml"]], [dice, fpv, fnv], rtol=1e-9, equal_nan=True)


def test_scorer_reused_over_many_predictions_matches_one_shot_metrics():
    rng = np.random.default_rng(11)
    gt = rng.random((9, 8, 7)) < 0.2
    scorer = LesionScorer(gt, (1.0, 2.0, 3.0))
    for p in (0.0, 0.05, 0.3, 0.9):
        pred = rng.random(gt.shape) < p
        assert scorer(pred) == lesion_metrics(pred, gt, (1.0, 2.0, 3.0))
    empty = LesionScorer(np.zeros((4, 4, 4)), UNIT)
    assert empty(np.ones((4, 4, 4)))["fpv_ml"] == pytest.approx(0.064)


def test_cropping_to_the_masks_is_exact_at_volume_borders():
    rng = np.random.default_rng(3)
    small_p = rng.random((6, 6, 6)) < 0.3
    small_g = rng.random((6, 6, 6)) < 0.3
    big_p = np.zeros((30, 20, 25), bool)
    big_g = np.zeros((30, 20, 25), bool)
    big_p[24:, 14:, 19:] = small_p  # touching the far borders
    big_g[24:, 14:, 19:] = small_g
    assert lesion_metrics(big_p, big_g, UNIT) == lesion_metrics(small_p, small_g, UNIT)


# ---- aggregation --------------------------------------------------------------------------

def test_auc_on_known_curves():
    assert auc_trapezoid(range(11)) == pytest.approx(50.0)  # linear 0..10: area of the triangle
    assert auc_trapezoid([0.7] * 11) == pytest.approx(7.0)
    assert auc_trapezoid([0, 1] + [1] * 9) == pytest.approx(9.5)
    assert auc_trapezoid([k * k for k in range(11)]) == pytest.approx(335.0)  # trapezoid, not the exact 333.3
    assert math.isnan(auc_trapezoid([np.nan] * 11))
    with pytest.raises(ValueError):
        auc_trapezoid([1.0])


def _rows(case, tracer, dice, fpv, fnv, gt_ml=1.0):
    return [{"case": case, "tracer": tracer, "step": k, "dice": dice[k], "fpv_ml": fpv[k], "fnv_ml": fnv[k],
             "gt_ml": gt_ml} for k in range(11)]


def test_case_summary_auc_and_final():
    rows = _rows("fdg_a_1", "fdg", [k / 10 for k in range(11)], [10 - k for k in range(11)], [2.0] * 11)
    s = case_summary(rows[::-1])  # order of rows does not matter
    assert s["dice_auc"] == pytest.approx(5.0) and s["dice_final"] == pytest.approx(1.0)
    assert s["fpv_auc"] == pytest.approx(50.0) and s["fpv_final"] == 0.0
    assert s["fnv_auc"] == pytest.approx(20.0) and not s["negative"]
    with pytest.raises(ValueError, match="steps"):
        case_summary(rows[:10])


def test_cohort_summary_excludes_nan_and_says_so():
    nan = [np.nan] * 11
    rows = (_rows("fdg_a_1", "fdg", [0.5] * 11, [1.0] * 11, [0.0] * 11)
            + _rows("fdg_b_1", "fdg", [0.9] * 11, [3.0] * 11, [2.0] * 11)
            + _rows("psma_c_1", "psma", nan, [4.0] * 11, nan, gt_ml=0.0))
    s = cohort_summary(rows, skipped=[{"case": "psma_d_1", "reason": "x: bad"}])
    assert s["n_cases"] == 4 and s["n_evaluated"] == 3 and s["n_skipped"] == 1
    o = s["overall"]
    assert o["n_negative"] == 1
    assert o["dice_auc"]["n"] == 2 and o["dice_auc"]["mean"] == pytest.approx(7.0)
    assert o["fpv_final"]["n"] == 3 and o["fpv_final"]["mean"] == pytest.approx(8 / 3)
    assert o["fpv_final"]["median"] == pytest.approx(3.0)
    assert o["fnv_auc"]["mean"] == pytest.approx(10.0) and o["fnv_auc"]["n"] == 2
    assert s["per_tracer"]["psma"]["dice_auc"] == {"mean": None, "median": None, "q25": None, "q75": None, "n": 0}
    assert s["per_tracer"]["psma"]["fpv_auc"]["mean"] == pytest.approx(40.0)
    assert s["per_tracer"]["fdg"]["n_cases"] == 2
    steps = per_step_stats(rows)
    assert steps["dice"]["mean"][3] == pytest.approx(0.7) and steps["dice"]["n"][3] == 2
