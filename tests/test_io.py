"""Volume, click-file and datalist I/O: round trips, fold grouping and every bad-input error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from petclick.cli import main as cli_main
from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks, clicks_from_json, read_clicks, validate_clicks, write_clicks
from petclick.io.datalist import assign_folds, build_datalist, load_datalist, parse_case_id
from petclick.io.images import load_case, load_volume, save_volume, voxel_volume_ml

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def write_case(root, case, shape=(6, 5, 4), affine=AFFINE, label=None, ct_shape=None, ct_affine=None):
    save_volume(root / "imagesTr" / f"{case}_0000.nii.gz", np.zeros(ct_shape or shape, np.float32), ct_affine if ct_affine is not None else affine)
    save_volume(root / "imagesTr" / f"{case}_0001.nii.gz", np.ones(shape, np.float32), affine)
    lab = np.zeros(shape, np.uint8) if label is None else label
    save_volume(root / "labelsTr" / f"{case}.nii.gz", lab, affine)


# ---- click files -------------------------------------------------------------------------

def test_click_formats_round_trip(tmp_path):
    clicks = Clicks([(1, 2, 3), (4, 5, 6)], [(0, 0, 0)])
    for fmt in ("plain", "gc"):
        path = write_clicks(tmp_path / f"c_{fmt}.json", clicks, format=fmt)
        assert read_clicks(path, shape=(10, 10, 10)) == clicks
    gc = json.loads((tmp_path / "c_gc.json").read_text())
    assert gc["type"] == "Multiple points" and gc["version"] == {"major": 1, "minor": 0}
    assert [p["name"] for p in gc["points"]] == ["tumor", "tumor", "background"]
    assert gc["points"][1]["point"] == [4, 5, 6]


def test_click_order_and_first_k():
    clicks = clicks_from_json({"tumor": [[1, 1, 1], [2, 2, 2], [3, 3, 3]], "background": [[9, 9, 9]]})
    step2 = clicks.first(2)
    assert step2.tumor == [(1, 1, 1), (2, 2, 2)] and step2.background == [(9, 9, 9)]
    assert len(clicks.first(0)) == 0


def test_integer_valued_floats_are_accepted():
    assert clicks_from_json({"tumor": [[1.0, 2.0, 3.0]], "background": []}).tumor == [(1, 2, 3)]


@pytest.mark.parametrize(
    "payload, message",
    [
        ("{not json", "malformed JSON"),
        ('[1, 2]', "JSON object"),
        ('{"lesions": []}', "unknown click-file schema"),
        ('{"tumor": [[1, 2]], "background": []}', "has 2 coordinates; a click has 3"),
        ('{"tumor": [[1.5, 2, 3]], "background": []}', "fractional (1.5)"),
        ('{"tumor": [[-1, 2, 3]], "background": []}', "outside the volume (negative index)"),
        ('{"tumor": [["a", 2, 3]], "background": []}', "is a string ('a'), not a number"),
        ('{"tumor": {"a": 1}}', "must be a list"),
        ('{"points": [{"point": [1, 2, 3], "name": "lesion"}]}', "expected 'tumor' or 'background'"),
        ('{"points": [{"name": "tumor"}]}', "'point' and 'name'"),
    ],
)
def test_malformed_click_files_name_file_and_problem(tmp_path, payload, message):
    path = tmp_path / "bad_clicks.json"
    path.write_text(payload)
    with pytest.raises(InputError) as err:
        read_clicks(path)
    assert "bad_clicks.json" in str(err.value) and message in str(err.value)


def test_click_outside_volume_and_budget(tmp_path):
    path = write_clicks(tmp_path / "c.json", Clicks([(1, 2, 3), (9, 2, 3)], []))
    with pytest.raises(InputError, match=r"click tumor\[1\] \[9, 2, 3\] lies outside the volume of shape \(9, 10, 10\)"):
        read_clicks(path, shape=(9, 10, 10))
    with pytest.raises(InputError, match="exceed the budget of 1"):
        validate_clicks(read_clicks(path), budget=1, source=path)


def test_missing_click_file(tmp_path):
    with pytest.raises(InputError, match="click file not found"):
        read_clicks(tmp_path / "none.json")


# ---- volumes and cases ---------------------------------------------------------------------

def test_volume_round_trip_and_voxel_volume(tmp_path):
    data = np.arange(60, dtype=np.float32).reshape(5, 4, 3)
    path = save_volume(tmp_path / "v.nii.gz", data, AFFINE)
    vol = load_volume(path)
    assert np.array_equal(vol.array, data) and np.allclose(vol.affine, AFFINE)
    assert vol.spacing == (2.0, 2.0, 3.0)
    assert voxel_volume_ml(AFFINE) == pytest.approx(0.012)
    assert voxel_volume_ml((4.0, 4.0, 5.0)) == pytest.approx(0.08)


def test_load_case_accepts_matching_grid(tmp_path):
    label = np.zeros((6, 5, 4), np.uint8)
    label[2, 2, 2] = 1
    write_case(tmp_path, "fdg_a_1", label=label)
    case = load_case(tmp_path / "imagesTr/fdg_a_1_0000.nii.gz", tmp_path / "imagesTr/fdg_a_1_0001.nii.gz",
                     tmp_path / "labelsTr/fdg_a_1.nii.gz")
    assert case.shape == (6, 5, 4) and case.label.array.dtype == np.uint8 and case.label.array.sum() == 1


def test_missing_modality_file(tmp_path):
    write_case(tmp_path, "fdg_a_1")
    (tmp_path / "imagesTr/fdg_a_1_0001.nii.gz").unlink()
    with pytest.raises(InputError, match=r"fdg_a_1_0001.nii.gz: missing PET file"):
        build_datalist(tmp_path, num_folds=1)
    with pytest.raises(InputError, match=r"fdg_a_1_0001.nii.gz: file not found"):
        load_case(tmp_path / "imagesTr/fdg_a_1_0000.nii.gz", tmp_path / "imagesTr/fdg_a_1_0001.nii.gz")


def test_shape_mismatch_named(tmp_path):
    write_case(tmp_path, "fdg_a_1", ct_shape=(6, 5, 3))
    with pytest.raises(InputError, match=r"fdg_a_1_0000.nii.gz: CT shape \(6, 5, 3\) differs"):
        build_datalist(tmp_path, num_folds=1)
    with pytest.raises(InputError, match="CT shape"):
        load_case(tmp_path / "imagesTr/fdg_a_1_0000.nii.gz", tmp_path / "imagesTr/fdg_a_1_0001.nii.gz")


def test_affine_mismatch_named(tmp_path):
    write_case(tmp_path, "fdg_a_1", ct_affine=np.diag([2.0, 2.0, 2.5, 1.0]))
    with pytest.raises(InputError, match=r"fdg_a_1_0000.nii.gz: CT affine differs"):
        build_datalist(tmp_path, num_folds=1)
    with pytest.raises(InputError, match="CT affine differs"):
        load_case(tmp_path / "imagesTr/fdg_a_1_0000.nii.gz", tmp_path / "imagesTr/fdg_a_1_0001.nii.gz")


def test_non_binary_label(tmp_path):
    label = np.zeros((6, 5, 4), np.uint8)
    label[1, 1, 1] = 2
    write_case(tmp_path, "fdg_a_1", label=label)
    with pytest.raises(InputError, match=r"fdg_a_1.nii.gz: label must be binary \(0/1\), found values 2"):
        load_case(tmp_path / "imagesTr/fdg_a_1_0000.nii.gz", tmp_path / "imagesTr/fdg_a_1_0001.nii.gz",
                  tmp_path / "labelsTr/fdg_a_1.nii.gz")


def test_unreadable_and_non_3d_volume(tmp_path):
    bad = tmp_path / "x.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="x.nii.gz: cannot read as NIfTI"):
        load_volume(bad)
    save_volume(tmp_path / "y.nii.gz", np.zeros((2, 2), np.float32), np.eye(4))
    with pytest.raises(InputError, match="expected a 3D volume"):
        load_volume(tmp_path / "y.nii.gz")


# ---- datalist ------------------------------------------------------------------------------

def test_parse_case_id():
    cid = parse_case_id("psma_0a1b2c_2019-03-04")
    assert (cid.tracer, cid.patient, cid.date) == ("psma", "0a1b2c", "2019-03-04")
    with pytest.raises(InputError, match="does not look like"):
        parse_case_id("patient7")


def test_folds_grouped_by_patient_and_balanced():
    cases = [f"{t}_p{p}_{d}" for t in ("fdg", "psma") for p in range(12) for d in range(1 + p % 3)]
    folds = assign_folds(cases, 5, seed=3)
    by_patient: dict[str, set[int]] = {}
    for case, fold in folds.items():
        cid = parse_case_id(case)
        by_patient.setdefault(cid.tracer + cid.patient, set()).add(fold)
    assert all(len(f) == 1 for f in by_patient.values())
    sizes = np.bincount(list(folds.values()), minlength=5)
    assert sizes.max() - sizes.min() <= 3
    assert assign_folds(cases, 5, seed=3) == folds
    assert assign_folds(cases, 5, seed=4) != folds


def test_build_datalist_relative_paths_clicks_and_testing(tmp_path):
    for case in ("fdg_a_1", "fdg_a_2", "psma_b_1", "fdg_c_1"):
        write_case(tmp_path, case)
        write_clicks(tmp_path / "clicks" / f"{case}_clicks.json", Clicks([(1, 1, 1)], []))
    dl = build_datalist(tmp_path, num_folds=2, seed=0, test_cases=["fdg_c_1"])
    assert [e["case"] for e in dl["testing"]] == ["fdg_c_1"]
    train = {e["case"]: e for e in dl["training"]}
    assert set(train) == {"fdg_a_1", "fdg_a_2", "psma_b_1"}
    assert train["fdg_a_1"]["fold"] == train["fdg_a_2"]["fold"]
    assert train["psma_b_1"]["tracer"] == "psma"
    assert train["fdg_a_1"]["image"] == "imagesTr/fdg_a_1_0000.nii.gz"
    assert train["fdg_a_1"]["pet"] == "imagesTr/fdg_a_1_0001.nii.gz"
    assert train["fdg_a_1"]["clicks"] == "clicks/fdg_a_1_clicks.json"


def test_missing_click_file_in_datalist(tmp_path):
    write_case(tmp_path, "fdg_a_1")
    (tmp_path / "clicks").mkdir()
    with pytest.raises(InputError, match="fdg_a_1_clicks.json: missing click file"):
        build_datalist(tmp_path, num_folds=1)


def test_duplicate_case_ids(tmp_path):
    write_case(tmp_path, "fdg_a_1")
    save_volume(tmp_path / "imagesTr" / "fdg_a_1_0000.nii", np.zeros((6, 5, 4), np.float32), AFFINE)
    with pytest.raises(InputError, match="duplicate case id 'fdg_a_1'"):
        build_datalist(tmp_path, num_folds=1)
    dl = tmp_path / "dl.json"
    dl.write_text(json.dumps({"training": [{"image": "a_0000.nii.gz", "pet": "p", "case": "x"},
                                           {"image": "b_0000.nii.gz", "pet": "q", "case": "x"}]}))
    with pytest.raises(InputError, match=r"dl.json: duplicate case id 'x' in training\[1\]"):
        load_datalist(dl)


def test_datalist_cli_writes_file_and_reports_errors(tmp_path, capsys):
    for case in ("fdg_a_1", "psma_b_1"):
        write_case(tmp_path / "data", case)
    out = tmp_path / "datalist.json"
    assert cli_main(["datalist", "--dataroot", str(tmp_path / "data"), "--folds", "2", "--out", str(out)]) == 0
    assert {e["fold"] for e in json.loads(out.read_text())["training"]} <= {0, 1}
    assert cli_main(["datalist", "--dataroot", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "imagesTr: folder not found" in capsys.readouterr().err
