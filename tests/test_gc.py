"""Grand-challenge interface: .mha geometry and index-order round trips, the container entry point."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from petclick.cli import main
from petclick.core.errors import InputError
from petclick.io.sitk import affine_from_sitk, array_from_sitk, load_mha, read_sitk, save_mha, sitk_from_array
from petclick.workflows.gc import discover_gc_inputs
from petclick.io.clickfile import Clicks, read_clicks, write_clicks
from petclick.phantoms import generate_case


@pytest.fixture(scope="module")
def phantom():
    return generate_case("fdg_gc_01", 7, shape=(32, 28, 40), tracer="fdg", clicks=False)


def oblique_affine(spacing=(2.0, 3.0, 4.0), origin=(-30.0, 12.5, 100.0)):
    """A rotated, axis-flipped voxel -> RAS affine: catches any mix-up of axes or LPS/RAS signs."""
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]) @ np.diag([-1, 1, 1])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def test_mha_round_trip_keeps_array_and_affine(tmp_path, phantom):
    aff = oblique_affine()
    path = save_mha(tmp_path / "pet.mha", phantom.pet, affine=aff)
    vol = load_mha(path)
    assert vol.array.shape == phantom.pet.shape
    np.testing.assert_array_equal(vol.array, phantom.pet)
    np.testing.assert_allclose(vol.affine, aff, atol=1e-6)


def test_index_order_agrees_with_nibabel_through_simpleitk(tmp_path, phantom):
    """SimpleITK reading a NIfTI that nibabel wrote gives the same (i, j, k) array and RAS affine."""
    aff = oblique_affine()
    nib.save(nib.Nifti1Image(phantom.label, aff), str(tmp_path / "label.nii.gz"))
    img = sitk.ReadImage(str(tmp_path / "label.nii.gz"))
    np.testing.assert_array_equal(array_from_sitk(img, np.uint8), phantom.label)
    np.testing.assert_allclose(affine_from_sitk(img), aff, atol=1e-4)


def test_click_point_indexes_the_same_voxel_and_world_position(tmp_path, phantom):
    aff = oblique_affine()
    path = save_mha(tmp_path / "label.mha", phantom.label, affine=aff)
    img = sitk.ReadImage(str(path))
    for p in [tuple(int(v) for v in q) for q in np.argwhere(phantom.label)[::7]] + [(0, 0, 0), (31, 27, 39)]:
        assert img.GetPixel(*p) == phantom.label[p]                      # ITK index (i, j, k) = our index
        lps = np.asarray(img.TransformIndexToPhysicalPoint(p))
        ras = aff @ [*p, 1]
        np.testing.assert_allclose(lps * [-1, -1, 1], ras[:3], atol=1e-4)


def test_output_copies_pet_geometry(tmp_path, phantom):
    ref = sitk_from_array(phantom.pet, affine=oblique_affine())
    out = sitk_from_array(phantom.label, reference=ref)
    assert out.GetOrigin() == ref.GetOrigin() and out.GetSpacing() == ref.GetSpacing()
    assert out.GetDirection() == ref.GetDirection() and out.GetSize() == ref.GetSize()
    with pytest.raises(ValueError, match="differs from the reference size"):
        sitk_from_array(phantom.label[:-1], reference=ref)


def write_gc_input(root, ph, clicks: Clicks | None, ct_affine=None, uuid="0b1c2d3e-uuid"):
    """Grand challenge names every image by its own uuid: the PET's name differs from the CT's."""
    aff = oblique_affine()
    save_mha(root / "images" / "pet" / "99999999-pet-uuid.mha", ph.pet, affine=aff)
    save_mha(root / "images" / "ct" / f"{uuid}.mha", ph.ct, affine=aff if ct_affine is None else ct_affine)
    if clicks is not None:
        write_clicks(root / "lesion-clicks.json", clicks, format="gc")
    return aff


def test_gc_end_to_end_with_baseline(tmp_path, phantom):
    lesion = [tuple(int(v) for v in q) for q in np.argwhere(phantom.label)][:1]
    brain = tuple(int(v) for v in np.argwhere(phantom.organs == 10)[0])   # hot normal uptake
    write_gc_input(tmp_path / "input", phantom, Clicks(lesion, [brain]))
    assert main(["gc", "--input", str(tmp_path / "input"), "--output", str(tmp_path / "output"),
                 "--models", "suv-threshold"]) == 0
    out = tmp_path / "output" / "images" / "tumor-lesion-segmentation" / "0b1c2d3e-uuid.mha"
    img, pet = sitk.ReadImage(str(out)), sitk.ReadImage(str(tmp_path / "input/images/pet/99999999-pet-uuid.mha"))
    assert img.GetSize() == pet.GetSize() and img.GetOrigin() == pet.GetOrigin()
    assert img.GetSpacing() == pet.GetSpacing() and img.GetDirection() == pet.GetDirection()
    assert img.GetPixelID() == sitk.sitkUInt8
    mask = array_from_sitk(img, np.uint8)
    assert mask[lesion[0]] == 1 and mask[brain] == 0
    assert set(np.unique(mask)) <= {0, 1}


def test_gc_without_click_file_is_step_zero_and_ct_resampled(tmp_path, phantom, caplog):
    shifted = oblique_affine()
    shifted[:3, 3] += shifted[:3, :3] @ [1, 0, 0]        # CT one voxel off the PET grid
    write_gc_input(tmp_path / "input", phantom, None, ct_affine=shifted)
    assert main(["gc", "--input", str(tmp_path / "input"), "--output", str(tmp_path / "o"), "--models", "suv-threshold"]) == 0
    assert "resampling the CT" in caplog.text and "lesion-clicks.json not found" in caplog.text
    mask = load_mha(tmp_path / "o/images/tumor-lesion-segmentation/0b1c2d3e-uuid.mha").array
    np.testing.assert_array_equal(mask, phantom.pet >= 2.5)   # the baseline at step 0


def test_gc_pairs_several_images_by_name_and_survives_bad_clicks(tmp_path, phantom, caplog):
    root = tmp_path / "input"
    for uuid in ("a", "b"):
        save_mha(root / "images" / "pet" / f"{uuid}.mha", phantom.pet, affine=oblique_affine())
        save_mha(root / "images" / "ct" / f"{uuid}.mha", phantom.ct, affine=oblique_affine())
    jobs = discover_gc_inputs(root)
    assert [(j.uuid, j.ct.name, j.pet.name) for j in jobs] == [("a", "a.mha", "a.mha"), ("b", "b.mha", "b.mha")]
    (root / "lesion-clicks.json").write_text("{not json")
    assert main(["gc", "--input", str(root), "--output", str(tmp_path / "o"), "--models", "suv-threshold"]) == 0
    assert "malformed JSON" in caplog.text and "predicting without clicks (step 0)" in caplog.text
    assert sorted(p.name for p in (tmp_path / "o/images/tumor-lesion-segmentation").iterdir()) == ["a.mha", "b.mha"]
    save_mha(root / "images" / "ct" / "c.mha", phantom.ct, affine=oblique_affine())
    save_mha(root / "images" / "pet" / "d.mha", phantom.pet, affine=oblique_affine())
    with pytest.raises(InputError, match="d.mha: 3 CT images and no CT with the same name"):
        discover_gc_inputs(root)


def test_gc_fractional_click_coordinates_are_dropped_like_every_bad_entry(tmp_path, phantom, caplog):
    """One rule everywhere: a fractional index is not a voxel index (strict: error; gc: entry dropped)."""
    root = tmp_path / "input"
    write_gc_input(root, phantom, None)
    (root / "lesion-clicks.json").write_text(json.dumps({"points": [
        {"point": [3.4, 4.0, 5.6], "name": "tumor"}, {"point": [3, 4, 5], "name": "tumor"}]}))
    assert main(["gc", "--input", str(root), "--output", str(tmp_path / "o"), "--models", "suv-threshold"]) == 0
    assert "dropped points[0] [3.4, 4.0, 5.6]: coordinate 0 (i) is fractional (3.4)" in caplog.text
    report = json.loads((tmp_path / "o" / "petclick-input-report.json").read_text())["jobs"][0]
    assert report["n_tumor_clicks"] == 1 and report["error"] is None
    assert report["dropped"] == [{"source": str(root / "lesion-clicks.json"), "entry": "points[0]",
                                  "click": [3.4, 4.0, 5.6], "reason": "coordinate 0 (i) is fractional (3.4); "
                                                                      "voxel indices are integers"}]
    with pytest.raises(InputError, match="fractional"):
        read_clicks(root / "lesion-clicks.json", phantom.pet.shape)


def test_gc_missing_inputs(tmp_path, phantom, capsys):
    (tmp_path / "input" / "images" / "ct").mkdir(parents=True)
    with pytest.raises(InputError, match="images/ct: no CT image found"):
        discover_gc_inputs(tmp_path / "input")
    assert main(["gc", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"),
                 "--models", "suv-threshold"]) == 2
    assert "input folder not found" in capsys.readouterr().err
    (tmp_path / "bad.mha").write_text("not an image")
    with pytest.raises(InputError, match="bad.mha: cannot read"):
        read_sitk(tmp_path / "bad.mha")


def test_gc_models_default_from_environment(monkeypatch, tmp_path):
    from petclick.cli import build_parser
    monkeypatch.setenv("PETCLICK_MODELS", str(tmp_path / "models"))
    args = build_parser().parse_args(["gc"])
    assert args.models == [str(tmp_path / "models")] and args.input == "/input" and args.output == "/output"
    monkeypatch.delenv("PETCLICK_MODELS")
    assert build_parser().parse_args(["gc"]).models == ["/opt/algorithm/models"]


def test_gc_click_json_points_are_pet_indices(tmp_path, phantom):
    """A gc points file with a click outside the volume: dropped with a warning, the others used."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"version": {"major": 1, "minor": 0}, "type": "Multiple points", "points": [
        {"point": [3, 4, 5], "name": "tumor"}, {"point": [3, 4, 400], "name": "background"}]}))
    clicks = read_clicks(path, phantom.pet.shape, policy="lenient")
    assert clicks.tumor == [(3, 4, 5)] and clicks.background == []


def test_dockerfile_entrypoint_parses_and_copies_existing_files():
    """The container cannot be built here: at least its command line parses and its sources exist."""
    from pathlib import Path

    from petclick.cli import build_parser
    root = Path(__file__).resolve().parents[1]
    lines = (root / "Dockerfile").read_text().splitlines()
    entry = json.loads(next(ln for ln in lines if ln.startswith("ENTRYPOINT")).split(None, 1)[1])
    cmd = json.loads(next(ln for ln in lines if ln.startswith("CMD")).split(None, 1)[1])
    assert entry[0] == "petclick"
    args = build_parser().parse_args(entry[1:] + cmd)
    assert args.command == "gc" and args.input == "/input" and args.output == "/output" and args.device == "auto"
    for ln in lines:
        if ln.startswith("COPY") and "models" not in ln:
            sources = [s for s in ln.split()[1:-1] if not s.startswith("--")]
            assert all((root / s).exists() for s in sources), ln
    ignore = (root / ".dockerignore").read_text().splitlines()
    assert "!petclick/" in ignore and "!models/" in ignore
