"""DICOM in and out: the phantom export read back (SUV against the phantom's own SUV, the finer CT
resampled onto the PET grid), the SUV rule by hand, pairing and refusals naming the tag, DICOM SEG
round trips, and `petclick predict` from a DICOM study to a DICOM SEG."""

from __future__ import annotations

import math
import shutil
from datetime import datetime, timedelta

import numpy as np
import pydicom
import pytest

import dicomstudies as D
from petclick.core.errors import InputError
from petclick.io.dicom_seg import read_seg, write_seg
from petclick.io.dicom_study import load_dicom_case
from petclick.io.dicom_suv import SuvParameters, dose_tags, suv_factor
from petclick.io.images import load_volume

SUV_REL_TOL = 1e-3
SUV_FLOOR = 0.5     # relative error where the reference SUV is at least this (the body: soft tissue and above)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return D.write_dicom_cohort(tmp_path_factory.mktemp("dicom_cohort"))


def _copy_case(cohort, tmp_path, n=0):
    root, index = cohort
    case = D.CASES[n][0]
    dst = tmp_path / case
    shutil.copytree(root / "dicom" / case, dst)
    return case, dst


@pytest.mark.parametrize("n", [0, 1])
def test_export_reads_back_suv_within_1e3_and_the_fine_ct_resampled_onto_the_pet_grid(cohort, n):
    """SUV error: |SUV_dicom - SUV_phantom| / SUV_phantom over voxels with SUV_phantom >= 0.5 (soft tissue and above); below
    that, 16-bit storage (a slope per slice, as scanners write) bounds the absolute error by half a
    step of the slice's maximum / 65535, which is checked too."""
    root, index = cohort
    case = D.CASES[n][0]
    entry = index["cases"][case]
    read = load_dicom_case(root / "dicom" / case)
    pet_ref = load_volume(root / "imagesTr" / f"{case}_0001.nii.gz")
    ct_ref = load_volume(root / "imagesTr" / f"{case}_0000.nii.gz")
    assert read.study_uid == entry["study"] and read.pet_series.series_uid == entry["pet_series"]
    assert read.ct_native_shape == tuple(2 * s for s in D.SHAPE)         # the CT lay on its own, finer grid
    pet, ct = read.case.pet, read.case.ct
    assert pet.array.shape == D.SHAPE and ct.array.shape == D.SHAPE
    np.testing.assert_allclose(pet.affine, pet_ref.affine, atol=1e-4)
    np.testing.assert_allclose(ct.affine, pet_ref.affine, atol=1e-4)
    body = pet_ref.array >= SUV_FLOOR
    rel = np.abs(pet.array[body] - pet_ref.array[body]) / pet_ref.array[body]
    assert rel.max() <= SUV_REL_TOL, rel.max()
    half_step = pet_ref.array.max(axis=(0, 1)) / 65535 / 2 * 1.01 + 1e-6     # per slice, in SUV
    assert np.all(np.abs(pet.array - pet_ref.array).max(axis=(0, 1)) <= half_step)
    assert math.isclose(read.suv_factor, entry["suv_factor"], rel_tol=1e-12)
    np.testing.assert_array_equal(ct.array, ct_ref.array)                # nearest refinement, trilinear back: exact


def test_body_weight_suv_by_hand():
    ds = pydicom.Dataset()
    t = datetime(2021, 5, 4, 10, 30, 0)
    dose_tags(ds, SuvParameters(70.0, 370e6, 6586.2, t - timedelta(minutes=60), t, "START"))
    decayed = 370e6 * math.exp(-math.log(2) * 3600 / 6586.2)
    assert math.isclose(suv_factor(ds, "x"), 70_000 / decayed, rel_tol=1e-6)
    ds.DecayCorrection = "ADMIN"                                        # already corrected to injection
    assert math.isclose(suv_factor(ds, "x"), 70_000 / 370e6, rel_tol=1e-6)
    del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime   # time alone + SeriesDate
    ds.DecayCorrection = "START"
    assert math.isclose(suv_factor(ds, "x"), 70_000 / decayed, rel_tol=1e-6)


def _without(keyword, in_item=False):
    def edit(ds):
        target = ds.RadiopharmaceuticalInformationSequence[0] if in_item else ds
        delattr(target, keyword)
    return edit


@pytest.mark.parametrize("edit, tag", [
    (_without("PatientWeight"), "PatientWeight (0010,1030)"),
    (_without("RadionuclideTotalDose", True), "RadionuclideTotalDose (0018,1074)"),
    (_without("RadionuclideHalfLife", True), "RadionuclideHalfLife (0018,1075)"),
    (_without("RadiopharmaceuticalInformationSequence"), "RadiopharmaceuticalInformationSequence (0054,0016)"),
    (_without("SeriesTime"), "SeriesTime (0008,0031)"),
    (_without("DecayCorrection"), "DecayCorrection (0054,1102)"),
    (lambda ds: setattr(ds, "Units", "CNTS"), "Units (0054,1001)"),
    (lambda ds: setattr(ds, "DecayCorrection", "NONE"), "DecayCorrection (0054,1102)"),
    (lambda ds: setattr(ds, "PatientWeight", "0"), "PatientWeight (0010,1030)"),
])
def test_pet_without_what_suv_needs_is_refused_naming_the_tag(cohort, tmp_path, edit, tag):
    _, study = _copy_case(cohort, tmp_path)
    D.rewrite_series(study / "PT", edit)
    with pytest.raises(InputError, match=tag.replace("(", r"\(").replace(")", r"\)")):
        load_dicom_case(study)


def test_start_time_alone_is_missing_too(cohort, tmp_path):
    _, study = _copy_case(cohort, tmp_path)

    def edit(ds):
        item = ds.RadiopharmaceuticalInformationSequence[0]
        del item.RadiopharmaceuticalStartDateTime
        del item.RadiopharmaceuticalStartTime
    D.rewrite_series(study / "PT", edit)
    with pytest.raises(InputError, match=r"RadiopharmaceuticalStartTime \(0018,1072\)"):
        load_dicom_case(study)


def test_study_without_pet_and_ct_pet_apart_are_refused(cohort, tmp_path):
    _, study = _copy_case(cohort, tmp_path)
    shutil.rmtree(study / "PT")
    with pytest.raises(InputError, match="has no PET series .*CT series"):
        load_dicom_case(study)
    _, study = _copy_case(cohort, tmp_path / "apart")
    D.rewrite_series(study / "CT", lambda ds: setattr(ds, "ImagePositionPatient",
                                                      [float(v) + 5000.0 for v in ds.ImagePositionPatient]))
    with pytest.raises(InputError, match="do not overlap in space"):
        load_dicom_case(study)
    with pytest.raises(InputError, match="DICOM folder not found"):
        load_dicom_case(tmp_path / "nothing")


def test_two_studies_in_one_folder_need_a_study_uid(cohort):
    root, index = cohort
    with pytest.raises(InputError, match="holds 2 studies"):
        load_dicom_case(root / "dicom")
    case = D.CASES[1][0]
    read = load_dicom_case(root / "dicom", index["cases"][case]["study"])
    assert read.pet_series.series_uid == index["cases"][case]["pet_series"]


def test_seg_round_trip_gives_the_same_mask_and_references_the_pet(cohort, tmp_path):
    root, _ = cohort
    case = D.CASES[1][0]
    read = load_dicom_case(root / "dicom" / case)
    mask = load_volume(root / "labelsTr" / f"{case}.nii.gz").array.astype(np.uint8)
    assert mask.sum() > 0
    path = write_seg(tmp_path / "x.seg.dcm", mask, read.pet_datasets)
    ds = pydicom.dcmread(path)
    assert ds.Modality == "SEG" and ds.SegmentSequence[0].SegmentLabel == "Lesion"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == read.pet_series.series_uid
    assert ds.FrameOfReferenceUID == read.pet_series.header.FrameOfReferenceUID
    assert int(ds.NumberOfFrames) == int(np.count_nonzero(mask.any(axis=(0, 1))))    # lesion slices only
    np.testing.assert_array_equal(read_seg(path, read.pet_datasets), mask)
    empty = write_seg(tmp_path / "empty.seg.dcm", np.zeros_like(mask), read.pet_datasets)
    assert read_seg(empty, read.pet_datasets).sum() == 0
    other = load_dicom_case(root / "dicom" / D.CASES[0][0])
    with pytest.raises(InputError, match="not in the PET series"):
        read_seg(path, other.pet_datasets)
    with pytest.raises(InputError, match="mask shape"):
        write_seg(tmp_path / "bad.dcm", mask[:-1], read.pet_datasets)


def test_case_id_and_tracer_come_from_the_study(cohort):
    root, _ = cohort
    for case, tracer, _ in D.CASES:
        read = load_dicom_case(root / "dicom" / case)
        assert read.case_id == case and read.tracer == tracer


def test_predict_reads_a_dicom_study_and_writes_a_seg_that_honours_the_clicks(cohort, tmp_path):
    from petclick.cli import main as cli_main
    from petclick.io.clickfile import Clicks, write_clicks

    root, index = cohort
    case = D.CASES[1][0]
    mask = load_volume(root / "labelsTr" / f"{case}.nii.gz").array > 0
    tumour = tuple(int(v) for v in np.argwhere(mask)[0])
    clicks = write_clicks(tmp_path / "clicks.json", Clicks([tumour], [(1, 1, 1)]))
    out = tmp_path / "out"
    assert cli_main(["predict", "--models", "suv-threshold", "--dicom", str(root / "dicom"), "--study",
                     index["cases"][case]["study"], "--clicks", str(clicks), "--dicom-seg", "--out", str(out),
                     "--no-progress"]) == 0
    nifti = load_volume(out / f"{case}.nii.gz").array.astype(np.uint8)
    read = load_dicom_case(root / "dicom" / case)
    seg = read_seg(out / f"{case}.seg.dcm", read.pet_datasets)
    np.testing.assert_array_equal(seg, nifti)
    assert seg[tumour] == 1 and seg[1, 1, 1] == 0 and seg.sum() > 1


@pytest.mark.parametrize("argv, message", [
    (["--dicom-seg"], "--dicom-seg: a DICOM SEG references"),
    (["--dicom", "{root}/dicom/{case}/CT"], "holds no study with a PET series"),
    (["--dicom", "http://127.0.0.1:9/dicom-web"], "cannot reach the DICOMweb server"),
])
def test_predict_bad_dicom_input_is_one_line(cohort, tmp_path, capsys, argv, message):
    from petclick.cli import main as cli_main

    root, _ = cohort
    argv = [a.format(root=root, case=D.CASES[0][0]) for a in argv]
    extra = [] if "--dicom" in argv else ["--ct", "x", "--pet", "y"]
    code = cli_main(["predict", "--models", "suv-threshold", *extra, *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_predict_on_a_pet_without_dose_names_the_tag_in_one_line(cohort, tmp_path, capsys):
    from petclick.cli import main as cli_main

    _, study = _copy_case(cohort, tmp_path)
    D.rewrite_series(study / "PT", _without("PatientWeight"))
    code = cli_main(["predict", "--models", "suv-threshold", "--dicom", str(study), "--out", str(tmp_path / "o"),
                     "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "PatientWeight (0010,1030)" in err and len(err.splitlines()) == 1


def test_resample_paths_agree_for_either_memory_order_and_oblique_grids():
    from petclick.io.casefiles import resample_to
    from petclick.io.images import Volume

    rng = np.random.default_rng(0)
    array = rng.normal(size=(12, 10, 8)).astype(np.float32)
    src_affine = np.diag([-1.5, 1.2, 2.0, 1.0])
    src_affine[:3, 3] = [5, -3, 1]
    ref_affine = np.diag([-2.0, 2.1, 2.5, 1.0])
    ref_affine[:3, 3] = [4, -2, 2]
    ref = Volume(np.zeros((7, 6, 5), np.float32), ref_affine)
    c_order = resample_to(Volume(np.ascontiguousarray(array), src_affine), ref).array
    f_order = resample_to(Volume(np.asfortranarray(array), src_affine), ref).array
    np.testing.assert_allclose(c_order, f_order, atol=1e-5)
    oblique = ref_affine.copy()
    oblique[:3, :3] = ref_affine[:3, :3] @ np.array([[1, 0, 0], [0, 0.6, -0.8], [0, 0.8, 0.6]])
    ref_o = Volume(np.zeros((7, 6, 5), np.float32), oblique)
    np.testing.assert_allclose(resample_to(Volume(np.ascontiguousarray(array), src_affine), ref_o).array,
                               resample_to(Volume(np.asfortranarray(array), src_affine), ref_o).array, atol=1e-5)
    # and against a hand-computed trilinear value at one voxel
    world = ref_affine @ np.array([3, 2, 1, 1.0])
    x = (np.linalg.inv(src_affine) @ world)[:3]
    from scipy.ndimage import map_coordinates
    expected = map_coordinates(array, x.reshape(3, 1), order=1, mode="constant", cval=-1000)[0]
    assert abs(c_order[3, 2, 1] - expected) < 1e-5
