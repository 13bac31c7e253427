"""The 11-step protocol and the suv-threshold baseline, on tiny hand-built cases."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes, Volume, load_volume
from petclick.inference import protocol as protocol_module
from petclick.metrics.aggregate import case_summary
from petclick.inference.protocol import run_protocol
from petclick.inference.predictors import Predictor, SuvThresholdPredictor, get_predictor

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])  # 12 mm^3 = 0.012 mL per voxel
VOX_ML = 0.012
A = np.s_[2:5, 2:5, 2:5]        # lesion, SUV 6
B = np.s_[10:13, 10:13, 6:9]    # lesion, SUV 5
C = np.s_[2:5, 11:14, 8:11]     # physiological uptake, SUV 8 (not in the label)


def tiny_case(affine=AFFINE) -> CaseVolumes:
    shape = (16, 16, 12)
    pet = np.ones(shape, np.float32)
    pet[A], pet[B], pet[C] = 6.0, 5.0, 8.0
    label = np.zeros(shape, np.uint8)
    label[A] = label[B] = 1
    return CaseVolumes(Volume(np.zeros(shape, np.float32), affine), Volume(pet, affine), Volume(label, affine))


CLICKS = Clicks(tumor=[(3, 3, 3), (11, 11, 7)], background=[(3, 12, 9)])


# ---- suv-threshold -----------------------------------------------------------------------

def test_suv_threshold_is_a_predictor_and_follows_the_click_rules():
    case = tiny_case()
    p = SuvThresholdPredictor()
    assert isinstance(p, Predictor) and p.name == "suv-threshold"
    step0 = p.predict(case, Clicks())
    assert step0.dtype == np.float32 and step0.shape == case.shape
    assert step0.sum() == 81 and step0[A].all() and step0[B].all() and step0[C].all()
    one = p.predict(case, CLICKS.first(1))  # tumour click in A: only A stays
    assert one.sum() == 27 and one[A].all()
    bg_only = p.predict(case, Clicks([], [(3, 12, 9)]))  # background click removes C only
    assert bg_only.sum() == 54 and not bg_only[C].any()
    below = p.predict(case, Clicks([(0, 0, 0)], [(15, 15, 0)]))  # clicks below the threshold do nothing
    np.testing.assert_array_equal(below, step0)


def test_suv_threshold_threshold_and_26_connectivity():
    shape = (6, 6, 6)
    pet = np.zeros(shape, np.float32)
    pet[1, 1, 1] = pet[2, 2, 2] = 3.0  # touch only at a corner: one 26-connected region
    pet[4, 4, 4] = 2.4                  # below the default threshold
    case = CaseVolumes(Volume(pet, AFFINE), Volume(pet, AFFINE))
    out = SuvThresholdPredictor().predict(case, Clicks([(1, 1, 1)], []))
    assert out[2, 2, 2] == 1 and out.sum() == 2
    out18 = SuvThresholdPredictor(connectivity=18).predict(case, Clicks([(1, 1, 1)], []))
    assert out18.sum() == 1
    low = SuvThresholdPredictor(threshold=2.0)
    assert low.name == "suv-threshold-2" and low.predict(case, Clicks()).sum() == 3


def test_suv_threshold_splits_a_component_holding_both_click_kinds():
    shape = (12, 5, 5)
    pet = np.zeros(shape, np.float32)
    pet[0:10, 2, 2] = 4.0  # one bar: lesion end at i=1, organ end at i=8
    aff = np.diag([1.0, 5.0, 5.0, 1.0])
    case = CaseVolumes(Volume(pet, aff), Volume(pet, aff))
    out = SuvThresholdPredictor().predict(case, Clicks([(1, 2, 2)], [(8, 2, 2)]))
    assert out[0:5, 2, 2].all() and not out[5:, 2, 2].any()


def _reference_suv(pet, clicks, spacing, threshold=2.5):
    """The documented rule, written out voxel by voxel with scipy's 26-connected labelling."""
    from scipy import ndimage
    labels, _ = ndimage.label(pet >= threshold, np.ones((3, 3, 3)))
    t = {labels[p] for p in clicks.tumor} - {0}
    b = {labels[p] for p in clicks.background} - {0}
    out = np.zeros(pet.shape, np.float32)
    for idx in np.ndindex(pet.shape):
        c = labels[idx]
        if c == 0:
            continue
        if not t:
            out[idx] = c not in b
        elif c in t and c not in b:
            out[idx] = 1
        elif c in t:
            def d(points):
                return min(sum(((a - q) * s) ** 2 for a, q, s in zip(idx, p, spacing)) for p in points if labels[p] == c)
            out[idx] = d(clicks.tumor) <= d(clicks.background)
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 3), st.integers(0, 3))
def test_suv_threshold_matches_the_written_rule(seed, n_t, n_b):
    rng = np.random.default_rng(seed)
    shape = (7, 6, 5)
    pet = (rng.random(shape) * 4.0).astype(np.float32)
    aff = np.diag([1.0, 2.0, 3.0, 1.0])
    case = CaseVolumes(Volume(pet, aff), Volume(pet, aff))
    pts = [tuple(int(v) for v in rng.integers(0, shape)) for _ in range(n_t + n_b)]
    clicks = Clicks(pts[:n_t], pts[n_t:])
    np.testing.assert_array_equal(SuvThresholdPredictor().predict(case, clicks), _reference_suv(pet, clicks, (1.0, 2.0, 3.0)))


def test_get_predictor(monkeypatch, tmp_path):
    assert isinstance(get_predictor("suv-threshold", threshold=3.0), SuvThresholdPredictor)
    with pytest.raises(InputError, match="unknown predictor"):
        get_predictor("no-such-model")
    fake = types.ModuleType("petclick.inference.predictor")
    seen = {}

    def load_model_predictor(path, **kw):
        seen.update(path=path, **kw)
        return "model"

    fake.load_model_predictor = load_model_predictor
    monkeypatch.setitem(sys.modules, "petclick.inference", types.ModuleType("petclick.inference"))
    monkeypatch.setitem(sys.modules, "petclick.inference.predictor", fake)
    (tmp_path / "work").mkdir()
    assert get_predictor(tmp_path / "work", device="cuda") == "model"
    assert seen == {"path": tmp_path / "work", "device": "cuda"}


# ---- protocol ----------------------------------------------------------------------------

def test_official_protocol_with_suv_threshold_hand_computed():
    rows = run_protocol(SuvThresholdPredictor(), tiny_case(), CLICKS, case_id="fdg_x_1", tracer="fdg")
    assert [r["step"] for r in rows] == list(range(11))
    assert rows[0]["dice"] == pytest.approx(2 * 54 / (81 + 54))
    assert rows[0]["fpv_ml"] == pytest.approx(27 * VOX_ML) and rows[0]["fnv_ml"] == 0.0
    assert rows[1]["dice"] == pytest.approx(2 * 27 / 81)
    assert rows[1]["fpv_ml"] == 0.0 and rows[1]["fnv_ml"] == pytest.approx(27 * VOX_ML)
    for r in rows[2:]:
        assert r["dice"] == 1.0 and r["fpv_ml"] == 0.0 and r["fnv_ml"] == 0.0
    assert rows[1]["tumor_clicks"] == [[3, 3, 3]] and rows[1]["background_clicks"] == [[3, 12, 9]]
    assert rows[5]["n_tumor_clicks"] == 2 and rows[5]["n_background_clicks"] == 1
    s = case_summary(rows)
    assert s["dice_auc"] == pytest.approx((0.8 + 2 / 3) / 2 + (2 / 3 + 1) / 2 + 8)
    assert s["fpv_auc"] == pytest.approx(27 * VOX_ML / 2) and s["dice_final"] == 1.0


class Recorder:
    """A predictor that records the clicks it gets and predicts the label once it has 2 tumour clicks."""

    name = "recorder"

    def __init__(self):
        self.calls: list[Clicks] = []

    def predict(self, case, clicks):
        self.calls.append(clicks)
        if len(clicks.tumor) >= 2:
            return case.label.array.astype(np.float32) * 0.9  # probabilities >= 0.5 count
        return np.full(case.shape, 0.4, np.float32)  # below 0.5: empty mask


def test_official_steps_use_first_k_clicks_and_reuse_unchanged_steps(tmp_path):
    clicks = Clicks([(3, 3, 3), (11, 11, 7), (4, 4, 4)], [(0, 0, 0)])
    rec = Recorder()
    rows = run_protocol(rec, tiny_case(), clicks, case_id="c", save_dir=tmp_path)
    assert [len(c.tumor) for c in rec.calls] == [0, 1, 2, 3]  # steps 4..10 repeat step 3's clicks: no call
    assert [len(c.background) for c in rec.calls] == [0, 1, 1, 1]
    assert rec.calls[2].tumor == [(3, 3, 3), (11, 11, 7)]
    assert rows[1]["dice"] == 0.0 and rows[1]["fnv_ml"] == pytest.approx(54 * VOX_ML)
    assert rows[2]["dice"] == 1.0 and rows[10]["dice"] == 1.0
    saved = load_volume(tmp_path / "c_pred2.nii.gz", dtype=None)
    assert saved.array.dtype == np.uint8 and saved.array.sum() == 54
    np.testing.assert_allclose(saved.affine, AFFINE)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"c_pred{k}.nii.gz" for k in range(11))


def test_error_driven_mode_adds_clicks_from_the_error(monkeypatch):
    seen = []

    def fake_next(pred, label):
        seen.append(int(pred.sum()))
        return {"tumor": (3, 3, 3), "background": (0, 0, 0)} if len(seen) % 2 else {"tumor": (11, 11, 7)}

    monkeypatch.setattr(protocol_module, "_error_click_fn", lambda: fake_next)
    rec = Recorder()
    rows = run_protocol(rec, tiny_case(), None, mode="error-driven")
    assert len(rows) == 11 and len(seen) == 10  # no click is placed after the last step
    assert [r["n_tumor_clicks"] for r in rows] == list(range(11))
    assert [r["n_background_clicks"] for r in rows] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert all(r["n_tumor_clicks"] <= r["step"] and r["n_background_clicks"] <= r["step"] for r in rows)
    assert rows[1]["tumor_clicks"] == [[3, 3, 3]] and rows[2]["tumor_clicks"] == [[3, 3, 3], [11, 11, 7]]
    assert rows[0]["dice"] == 0.0 and rows[2]["dice"] == 1.0


def test_error_driven_stops_calling_when_nothing_to_correct(monkeypatch):
    monkeypatch.setattr(protocol_module, "_error_click_fn", lambda: (lambda pred, label: {}))
    rec = Recorder()
    rows = run_protocol(rec, tiny_case(), None, mode="error-driven")
    assert len(rec.calls) == 1 and all(r["n_tumor_clicks"] == 0 for r in rows)


def test_error_driven_with_the_real_click_rule():
    pytest.importorskip("petclick.clicks.error_driven")
    rows = run_protocol(SuvThresholdPredictor(), tiny_case(), None, mode="error-driven")
    assert rows[0]["fpv_ml"] == pytest.approx(27 * VOX_ML)
    assert all(r["n_tumor_clicks"] <= r["step"] and r["n_background_clicks"] <= r["step"] for r in rows)
    assert rows[-1]["dice"] >= rows[0]["dice"]


def test_protocol_bad_input():
    case = tiny_case()
    with pytest.raises(ValueError, match="mode"):
        run_protocol(SuvThresholdPredictor(), case, CLICKS, mode="oracle")
    with pytest.raises(InputError, match="no click file"):
        run_protocol(SuvThresholdPredictor(), case, None)
    unlabelled = CaseVolumes(case.ct, case.pet)
    with pytest.raises(InputError, match="no ground-truth label"):
        run_protocol(SuvThresholdPredictor(), unlabelled, CLICKS)

    class WrongGrid:
        name = "wrong"

        def predict(self, case, clicks):
            return np.zeros((3, 3, 3), np.float32)

    with pytest.raises(InputError, match="PET grid"):
        run_protocol(WrongGrid(), case, CLICKS)


def test_negative_case_rows_have_nan_dice_and_fnv():
    case = tiny_case()
    case.label.array[:] = 0
    rows = run_protocol(SuvThresholdPredictor(), case, Clicks([], [(3, 12, 9)]))
    assert math.isnan(rows[0]["dice"]) and math.isnan(rows[0]["fnv_ml"])
    assert rows[0]["fpv_ml"] == pytest.approx(81 * VOX_ML) and rows[1]["fpv_ml"] == pytest.approx(54 * VOX_ML)
