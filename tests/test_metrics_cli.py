"""`petclick evaluate` end to end on tiny NIfTI files: report numbers, skipped cases, pictures."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from petclick.cli import main as cli_main
from petclick.io.images import save_volume
from petclick.metrics.report import read_cases_csv

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
VOX_ML = 0.012
SHAPE = (16, 16, 12)
A = np.s_[2:5, 2:5, 2:5]
B = np.s_[10:13, 10:13, 6:9]
C = np.s_[2:5, 11:14, 8:11]


def mask(*boxes, shape=SHAPE, value=1):
    m = np.zeros(shape, np.uint8)
    for b in boxes:
        m[b] = value
    return m


@pytest.fixture
def folders(tmp_path):
    gt, pred, images = tmp_path / "gt", tmp_path / "pred", tmp_path / "images"
    save_volume(gt / "fdg_a_1.nii.gz", mask(A, B), AFFINE)
    for k in range(11):
        save_volume(pred / f"fdg_a_1_pred{k}.nii.gz", mask(A) if k < 5 else mask(A, B), AFFINE)
    pet = np.ones(SHAPE, np.float32)
    pet[A], pet[B], pet[C] = 6.0, 5.0, 8.0
    save_volume(images / "fdg_a_1_0001.nii.gz", pet, AFFINE)
    save_volume(gt / "psma_b_1.nii.gz", mask(A), AFFINE)                 # single-step prediction
    save_volume(pred / "psma_b_1.nii.gz", mask(A, C), AFFINE)
    save_volume(gt / "fdg_neg_1.nii.gz", mask(), AFFINE)                 # empty ground truth
    for k in range(11):
        save_volume(pred / f"fdg_neg_1_pred{k}.nii.gz", mask(C), AFFINE)
    save_volume(gt / "fdg_bad_1.nii.gz", mask(A), AFFINE)                # step 5 missing
    for k in range(11):
        if k != 5:
            save_volume(pred / f"fdg_bad_1_pred{k}.nii.gz", mask(A), AFFINE)
    save_volume(gt / "psma_nb_1.nii.gz", mask(A), AFFINE)                # non-binary prediction
    save_volume(pred / "psma_nb_1.nii.gz", mask(A, value=2), AFFINE)
    save_volume(gt / "fdg_shape_1.nii.gz", mask(A), AFFINE)              # shape mismatch
    save_volume(pred / "fdg_shape_1.nii.gz", mask(shape=(16, 16, 13)), AFFINE)
    save_volume(gt / "fdg_aff_1.nii.gz", mask(A), AFFINE)                # affine mismatch
    save_volume(pred / "fdg_aff_1.nii.gz", mask(A), np.diag([2.0, 2.0, 2.5, 1.0]))
    save_volume(gt / "fdg_gtonly_1.nii.gz", mask(A), AFFINE)             # no prediction at all
    save_volume(gt / "fdg_nbgt_1.nii.gz", mask(A, value=3), AFFINE)      # non-binary ground truth
    save_volume(pred / "fdg_nbgt_1.nii.gz", mask(A), AFFINE)
    return tmp_path


def test_evaluate_end_to_end(folders, capsys):
    out = folders / "report"
    rc = cli_main(["evaluate", "--gt", str(folders / "gt"), "--pred", str(folders / "pred"), "--out", str(out),
                   "--images", str(folders / "images")])
    assert rc == 0
    console = capsys.readouterr().out
    assert "evaluated 3 of 9 cases" in console and "6 skipped" in console

    rows = read_cases_csv(out / "cases.csv")
    assert len(rows) == 33
    by = {(r["case"], r["step"]): r for r in rows}
    assert by[("fdg_a_1", 4)]["dice"] == pytest.approx(2 / 3)
    assert by[("fdg_a_1", 4)]["fnv_ml"] == pytest.approx(27 * VOX_ML)
    assert by[("fdg_a_1", 5)]["dice"] == 1.0 and by[("fdg_a_1", 5)]["fnv_ml"] == 0.0
    assert by[("fdg_a_1", 7)]["source"] == "fdg_a_1_pred7.nii.gz" and by[("fdg_a_1", 7)]["tracer"] == "fdg"
    for k in range(11):  # a single prediction counts for every step
        r = by[("psma_b_1", k)]
        assert r["dice"] == pytest.approx(2 / 3) and r["fpv_ml"] == pytest.approx(27 * VOX_ML)
        assert r["source"] == "psma_b_1.nii.gz" and r["tracer"] == "psma"
    neg = by[("fdg_neg_1", 0)]
    assert math.isnan(neg["dice"]) and math.isnan(neg["fnv_ml"]) and neg["fpv_ml"] == pytest.approx(27 * VOX_ML)

    s = json.loads((out / "summary.json").read_text())
    assert (s["n_cases"], s["n_evaluated"], s["n_skipped"]) == (9, 3, 6)
    reasons = {x["case"]: x["reason"] for x in s["skipped"]}
    assert "fdg_bad_1_pred5.nii.gz" in reasons["fdg_bad_1"]
    assert "psma_nb_1.nii.gz" in reasons["psma_nb_1"] and "binary" in reasons["psma_nb_1"]
    assert "fdg_nbgt_1.nii.gz" in reasons["fdg_nbgt_1"] and "ground truth must be binary" in reasons["fdg_nbgt_1"]
    assert "shape" in reasons["fdg_shape_1"] and "affine" in reasons["fdg_aff_1"]
    assert "no prediction" in reasons["fdg_gtonly_1"]
    o = s["overall"]
    assert o["n_cases"] == 3 and o["n_negative"] == 1
    dice_auc_a = (5 * 2 / 3 + 6) - (2 / 3 + 1) / 2  # 8.5
    assert o["dice_auc"]["n"] == 2 and o["dice_auc"]["mean"] == pytest.approx((dice_auc_a + 20 / 3) / 2)
    assert o["dice_final"]["mean"] == pytest.approx((1 + 2 / 3) / 2)
    assert o["fpv_auc"]["n"] == 3 and o["fpv_auc"]["mean"] == pytest.approx((0 + 10 * 0.324 + 10 * 0.324) / 3)
    assert o["fnv_auc"]["mean"] == pytest.approx((0.324 * (4 + 0.5) + 0) / 2)
    assert s["per_tracer"]["fdg"]["n_cases"] == 2 and s["per_tracer"]["fdg"]["dice_auc"]["n"] == 1
    assert s["per_tracer"]["psma"]["dice_final"]["median"] == pytest.approx(2 / 3)
    assert s["per_step"]["dice"]["mean"][4] == pytest.approx(2 / 3)

    per_case = {r["case"]: r for r in csv.DictReader((out / "case_summary.csv").open())}
    assert sorted(per_case) == ["fdg_a_1", "fdg_neg_1", "psma_b_1"]
    assert float(per_case["fdg_a_1"]["dice_auc"]) == pytest.approx(dice_auc_a)
    assert per_case["fdg_neg_1"]["negative"] == "True" and per_case["fdg_neg_1"]["dice_auc"] == "nan"
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "mip" / "fdg_a_1.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "mip").iterdir()) == ["fdg_a_1.png"]  # PET given for that case only


def test_evaluate_tracer_and_pet_from_datalist(tmp_path):
    save_volume(tmp_path / "labelsTr" / "case7.nii.gz", mask(A), AFFINE)
    save_volume(tmp_path / "pred" / "case7.nii.gz", mask(A), AFFINE)
    pet = np.ones(SHAPE, np.float32)
    save_volume(tmp_path / "imagesTr" / "case7_0001.nii.gz", pet, AFFINE)
    datalist = {"training": [], "testing": [{"image": "imagesTr/case7_0000.nii.gz", "pet": "imagesTr/case7_0001.nii.gz",
                                             "case": "case7", "tracer": "psma"}]}
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    out = tmp_path / "report"
    rc = cli_main(["evaluate", "--gt", str(tmp_path / "labelsTr"), "--pred", str(tmp_path / "pred"), "--out", str(out),
                   "--datalist", str(tmp_path / "datalist.json")])
    assert rc == 0
    rows = read_cases_csv(out / "cases.csv")
    assert {r["tracer"] for r in rows} == {"psma"} and rows[0]["dice"] == 1.0
    assert (out / "mip" / "case7.png").is_file()


def test_evaluate_nothing_to_score_and_missing_folder(tmp_path, capsys):
    save_volume(tmp_path / "gt" / "fdg_a_1.nii.gz", mask(A), AFFINE)
    (tmp_path / "pred").mkdir()
    rc = cli_main(["evaluate", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--out", str(tmp_path / "r")])
    assert rc == 2 and "no case could be evaluated (1 skipped; first: fdg_a_1:" in capsys.readouterr().err
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["n_evaluated"] == 0 and s["n_skipped"] == 1 and s["overall"]["dice_auc"]["mean"] is None
    rc = cli_main(["evaluate", "--gt", str(tmp_path / "nope"), "--pred", str(tmp_path / "pred"), "--out", str(tmp_path / "r")])
    assert rc == 2 and "ground-truth folder not found" in capsys.readouterr().err


@pytest.mark.parametrize("affine, col_of_i0", [(np.diag([2.0, 2.0, 3.0, 1.0]), 4), (np.diag([-2.0, -2.0, 3.0, 1.0]), 0)])
def test_coronal_mip_reader_orientation(affine, col_of_i0):
    from petclick.metrics.plots import CoronalView
    vol = np.zeros((5, 4, 6), np.float32)
    vol[0, 3, 0] = 7.0  # i = 0, inferior-most slice
    vol[0, 1, 0] = 2.0  # same ray: the projection keeps the maximum
    view = CoronalView(affine, vol.shape)
    mip = view.project(vol)
    assert mip.shape == (6, 5)  # rows: head to feet (k), columns: patient's right to left (i)
    assert mip[5, col_of_i0] == 7.0 and mip.sum() == 7.0
    cols, rows = view.points([(0, 3, 0)])
    assert (cols[0], rows[0]) == (col_of_i0, 5)
    assert view.aspect == pytest.approx(1.5)


def test_evaluate_autopet_v_protocol(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    save_volume(gt / "fdg_a_1.nii.gz", mask(A, B), AFFINE)               # two lesions
    for k in range(6):                                                    # B found from step 3 on
        save_volume(pred / f"fdg_a_1_pred{k}.nii.gz", mask(A) if k < 3 else mask(A, B), AFFINE)
    save_volume(gt / "fdg_neg_1.nii.gz", mask(), AFFINE)                 # lesion-free, empty predictions
    for k in range(6):
        save_volume(pred / f"fdg_neg_1_pred{k}.nii.gz", mask(), AFFINE)
    save_volume(gt / "psma_fp_1.nii.gz", mask(), AFFINE)                 # lesion-free, one false positive
    save_volume(pred / "psma_fp_1.nii.gz", mask(C), AFFINE)
    save_volume(gt / "psma_b_1.nii.gz", mask(A), AFFINE)                 # single prediction: A plus a FP
    save_volume(pred / "psma_b_1.nii.gz", mask(A, C), AFFINE)
    save_volume(pred / "psma_b_1_pred0.nii.gz", mask(A), AFFINE)         # an incomplete step set wins: skipped
    out = tmp_path / "report"
    args = ["evaluate", "--gt", str(gt), "--pred", str(pred), "--out", str(out), "--protocol", "autopet-v"]
    assert cli_main(args) == 0
    console = capsys.readouterr().out
    assert "evaluated 3 of 4 cases" in console and "AUC-DMM, mean over cases with lesions" in console

    header = (out / "cases.csv").read_text().splitlines()[0].split(",")
    assert header[header.index("dice") + 1] == "dmm" and {"dmm_tp", "dmm_fp", "dmm_fn"} <= set(header)
    rows = read_cases_csv(out / "cases.csv")
    by = {(r["case"], r["step"]): r for r in rows}
    assert len(rows) == 18 and max(r["step"] for r in rows) == 5
    assert by[("fdg_a_1", 2)]["dmm"] == pytest.approx(2 / 3) and by[("fdg_a_1", 2)]["dmm_fn"] == 1
    assert by[("fdg_a_1", 3)]["dmm"] == 1.0 and by[("fdg_a_1", 3)]["dice"] == 1.0
    assert by[("fdg_neg_1", 0)]["dice"] == 1.0 and math.isnan(by[("fdg_neg_1", 0)]["dmm"])
    assert by[("psma_fp_1", 4)]["dice"] == 0.0 and by[("psma_fp_1", 4)]["dmm_fp"] == 1
    s = json.loads((out / "summary.json").read_text())
    assert s["protocol"] == "autopet-v" and s["n_steps"] == 6
    assert "psma_b_1_pred1.nii.gz" in s["skipped"][0]["reason"]
    auc_a = auc_of([2 / 3] * 3 + [1.0] * 3)
    assert s["overall"]["dice_auc"]["n"] == 3                          # lesion-free cases count in Dice
    assert s["overall"]["dmm_auc"]["n"] == 1 and s["overall"]["dmm_auc"]["mean"] == pytest.approx(auc_a)
    agg = s["auc_dmm"]
    assert agg["mean_over_cases_with_lesions"]["value"] == pytest.approx(auc_a)
    assert agg["pooled_f1_per_tracer"]["fdg"]["auc"] == pytest.approx(auc_a)
    assert agg["pooled_f1_per_tracer"]["psma"]["auc"] is None          # psma: no lesion anywhere, F1 undefined
    assert agg["pooled_f1_mean_over_tracers"]["value"] == pytest.approx(auc_a)
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"

    # the step count is a parameter: 5 steps leave fdg_a_1_pred5 unexpected
    assert cli_main(args + ["--steps", "5", "--out", str(tmp_path / "r5")]) == 0
    s5 = json.loads((tmp_path / "r5" / "summary.json").read_text())
    assert any("unexpected step 5" in x["reason"] for x in s5["skipped"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli_main(args + ["--steps", "1"])
    assert exc.value.code == 2 and "at least 2 steps" in capsys.readouterr().err


def auc_of(values):
    return sum(values) - (values[0] + values[-1]) / 2


def test_evaluate_autopet_iv_keeps_its_columns(folders):
    out = folders / "iv"
    assert cli_main(["evaluate", "--gt", str(folders / "gt"), "--pred", str(folders / "pred"), "--out", str(out)]) == 0
    header = (out / "cases.csv").read_text().splitlines()[0]
    assert "dmm" not in header and header.startswith("case,tracer,step,dice,fpv_ml,fnv_ml")
    s = json.loads((out / "summary.json").read_text())
    assert "auc_dmm" not in s and "protocol" not in s and "dmm_auc" not in s["overall"]
