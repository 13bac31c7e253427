"""Phantom generator: determinism, geometry, labels, uptake tables, difficulty, datalist, CLI."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cc3d
import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from petclick.core.errors import InputError
from petclick.cli import main as cli_main
from petclick.io.clickfile import read_clicks
from petclick.io.datalist import entry_case_id, load_datalist, parse_case_id, resolve_entry
from petclick.io.images import load_case, load_volume
from petclick.phantoms import ORGAN_LABELS, generate_case, generate_cohort, plan_cohort
from petclick.phantoms.grid import derive_spacing
from petclick.phantoms.lesions import SITE_WEIGHTS
from petclick.phantoms.physics import CENTRES
from petclick.phantoms.lesion_uptake import PEAK_SUV

SHAPE = ("48", "48", "64")
N_CASES, SEED = 10, 3
OL = ORGAN_LABELS


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """A 10-case mixed cohort written through the CLI (the end-to-end test of `petclick phantoms`)."""
    out = tmp_path_factory.mktemp("phantoms") / "cohort"
    rc = cli_main(["phantoms", "--out", str(out), "--cases", str(N_CASES), "--seed", str(SEED), "--shape", *SHAPE])
    assert rc == 0
    return out


def _entries(root: Path) -> list[dict]:
    data = load_datalist(root / "datalist.json")
    return [resolve_entry(e, root) for e in data["training"] + data["testing"]]


def _meta(root: Path, case: str) -> dict:
    return json.loads((root / "meta" / f"{case}.json").read_text())


def test_cli_writes_the_layout(cohort):
    entries = _entries(cohort)
    assert len(entries) == N_CASES
    for e in entries:
        case = entry_case_id(e)
        for key in ("image", "pet", "label", "organs", "clicks"):
            assert Path(e[key]).is_file(), (case, key)
        assert e["tracer"] == parse_case_id(case).tracer
        meta = _meta(cohort, case)
        assert meta["tracer"] == e["tracer"] and 0 <= meta["centre"] < len(CENTRES)
        assert 5.0 <= meta["psf_fwhm_mm"] <= 8.0
    assert {e["tracer"] for e in entries} == {"fdg", "psma"}
    negatives = sum(_meta(cohort, entry_case_id(e))["negative"] for e in entries)
    assert negatives == round(0.4 * N_CASES)


def test_same_seed_gives_identical_files_and_other_seed_differs(cohort, tmp_path):
    again = generate_cohort(tmp_path / cohort.name, N_CASES, SEED, tuple(map(int, SHAPE)))
    files = sorted(p.relative_to(cohort) for p in cohort.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again.parent) for p in again.parent.rglob("*") if p.is_file())
    for rel in files:
        assert (cohort / rel).read_bytes() == (again.parent / rel).read_bytes(), rel
    a = generate_case("fdg_p_1", 11, (48, 48, 64), clicks=False)
    b = generate_case("fdg_p_1", 11, (48, 48, 64), clicks=False)
    c = generate_case("fdg_p_1", 12, (48, 48, 64), clicks=False)
    for name in ("ct", "pet", "label", "organs"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.pet, c.pet) and not np.array_equal(a.organs, c.organs)


def test_volumes_of_a_case_share_one_grid(cohort):
    expected = derive_spacing((48, 48, 64))
    for e in _entries(cohort):
        vols = load_case(e["image"], e["pet"], e["label"], e["organs"])   # raises on shape/affine mismatch
        assert vols.shape == (48, 48, 64)
        np.testing.assert_allclose(vols.pet.spacing, expected, rtol=1e-6)
        for v in (vols.ct, vols.label, vols.organs):
            np.testing.assert_array_equal(v.affine, vols.pet.affine)
        assert vols.pet.array.min() >= 0.0
        assert -1024 <= vols.ct.array.min() and vols.ct.array.max() <= 3071


def test_negatives_are_empty_and_each_listed_lesion_is_one_component(cohort):
    for e in _entries(cohort):
        meta = _meta(cohort, entry_case_id(e))
        label = load_volume(e["label"], np.uint8).array
        if meta["negative"]:
            assert label.sum() == 0 and meta["lesions"] == []
            continue
        lesions = meta["lesions"]
        assert 1 <= len(lesions) <= 20
        _, n_comp = cc3d.connected_components(label, connectivity=18, return_N=True)
        assert n_comp == len(lesions)
        assert int(label.sum()) == sum(les["voxels"] for les in lesions)
        lo, hi = PEAK_SUV[meta["tracer"]]["lo"], PEAK_SUV[meta["tracer"]]["hi"]
        for les in lesions:
            assert les["site"] in SITE_WEIGHTS[meta["tracer"]]
            max_radius = 60.0 if les["shape"] == "conglomerate" else 30.5
            assert 3.0 <= les["radius_mm"] <= max_radius and lo <= les["suv"] <= hi and les["voxels"] >= 5
            assert label[tuple(les["center_voxel"])] in (0, 1)


def test_lesions_are_brighter_than_their_surroundings():
    brighter, total = 0, 0
    for seed in range(4):
        case = generate_case("fdg_p_1", 100 + seed, (80, 80, 112), tracer=("fdg", "psma")[seed % 2], clicks=False)
        comps = cc3d.connected_components(case.label, connectivity=18)
        for n in range(1, int(comps.max()) + 1):
            lesion = comps == n
            shell = binary_dilation(lesion, iterations=2) & (case.label == 0)
            brighter += case.pet[lesion].mean() > case.pet[shell].mean()
            total += 1
        assert case.pet[case.label > 0].mean() > 1.5 * case.pet[binary_dilation(case.label > 0, iterations=2) & (case.label == 0)].mean()
    assert total >= 4 and brighter >= 0.8 * total


def _interior(organs: np.ndarray) -> np.ndarray:
    """Voxels whose 6 neighbours all have their organ label (away from the CT's partial-volume borders)."""
    same = np.ones(organs.shape, bool)
    for axis in range(3):
        for shift in (1, -1):
            same &= np.roll(organs, shift, axis=axis) == organs
    return same


def _organ_means(case, image: str, interior: bool = False) -> dict[str, float]:
    arr = getattr(case, image)
    if interior:  # an organ with no interior voxel (a thin layer on a coarse grid) keeps all its voxels
        inside = _interior(case.organs)
        organs = np.where(inside, case.organs, 0).astype(np.int64)
        thin = [v for v in OL.values() if not np.any(organs == v)]
        organs[np.isin(case.organs, thin)] = case.organs[np.isin(case.organs, thin)]
        arr = np.where(organs > 0, arr, 0)
        counts = np.bincount(organs.ravel(), minlength=max(OL.values()) + 1)
        sums = np.bincount(organs.ravel(), weights=arr.ravel(), minlength=len(counts))
        return {k: sums[v] / counts[v] for k, v in OL.items()}
    counts = np.bincount(case.organs.ravel(), minlength=max(OL.values()) + 1)
    assert all(counts[v] > 0 for v in OL.values()), {k: int(counts[v]) for k, v in OL.items()}
    sums = np.bincount(case.organs.ravel(), weights=arr.ravel(), minlength=len(counts))
    return {k: sums[v] / counts[v] for k, v in OL.items()}


@pytest.mark.parametrize("shape", [(48, 48, 64), (64, 64, 96)])
def test_fdg_organs_have_the_design_uptake_and_hu(shape):
    case = generate_case("fdg_p_1", 7, shape, tracer="fdg", negative=True, clicks=False)
    suv, hu = _organ_means(case, "pet"), _organ_means(case, "ct", interior=True)
    assert suv["brain"] > suv["liver"] > suv["soft_tissue"] > suv["fat"]
    assert 4.5 < suv["brain"] < 9.5 and 1.6 < suv["liver"] < 2.9 and suv["bladder"] > 3.0
    assert suv["liver"] > suv["blood_pool"] > suv["lung"]
    # the fat layer is about one voxel thick on these grids: partial volume with air (CTres) lowers it
    assert -900 < hu["lung"] < -780 and -250 < hu["fat"] < -70 and 40 < hu["liver"] < 75
    assert hu["spine"] > 250 and hu["skull"] > 600 and hu["brain"] < 60
    air = case.ct[case.organs == 0]
    assert abs(air.mean() + 1000) < 5 and 8 < air.std() < 27   # CT noise 10-25 HU
    assert case.pet[case.organs == 0].mean() < 0.1


def test_psma_organs_have_the_design_uptake():
    case = generate_case("psma_p_1", 8, (64, 64, 96), tracer="psma", negative=True, clicks=False)
    suv = _organ_means(case, "pet")
    assert suv["salivary_glands"] > 5 and suv["kidneys"] > 8 and suv["brain"] < 0.8
    assert 3.0 < suv["liver"] < 6.5 and 2.5 < suv["small_bowel"] < 6.5 and suv["spleen"] > suv["soft_tissue"]
    assert suv["kidneys"] > suv["liver"] > suv["brain"]


def test_myocardium_varies_and_noise_depends_on_the_centre():
    myo = [generate_case("fdg_p_1", s, (48, 48, 64), negative=True, clicks=False).meta["organ_suv"]["myocardium"] for s in range(8)]
    assert min(myo) >= 1.0 and max(myo) <= 10.0 and max(myo) / min(myo) > 2.0
    sd = []
    for centre in (0, len(CENTRES) - 1):
        case = generate_case("fdg_p_1", 5, (64, 64, 96), negative=True, centre=centre, clicks=False)
        liver = case.organs == OL["liver"]
        interior = liver & ~binary_dilation(~liver, iterations=1)
        sd.append(case.pet[interior].std())
    assert sd[1] > 1.5 * sd[0]


def test_a_plain_suv_threshold_is_not_enough(cohort):
    positive, hard = 0, 0
    for e in _entries(cohort):
        label = load_volume(e["label"], np.uint8).array
        if not label.any():
            continue
        positive += 1
        above = load_volume(e["pet"]).array >= 2.5
        false_pos = int((above & (label == 0)).sum())
        hard += false_pos > 0.5 * int(above.sum())
    assert positive >= 4 and hard >= 0.8 * positive


def test_datalist_groups_patients_and_holds_out_whole_patients(cohort):
    data = load_datalist(cohort / "datalist.json")
    folds: dict[str, set[int]] = defaultdict(set)
    for e in data["training"]:
        folds[parse_case_id(entry_case_id(e)).patient].add(e["fold"])
    assert all(len(f) == 1 for f in folds.values())
    test_patients = {parse_case_id(entry_case_id(e)).patient for e in data["testing"]}
    assert test_patients and not test_patients & set(folds)
    n_patients = len(test_patients | set(folds))
    assert len(test_patients) == max(1, round(0.2 * n_patients))
    studies = defaultdict(int)
    for e in data["training"] + data["testing"]:
        studies[parse_case_id(entry_case_id(e)).patient] += 1
    assert max(studies.values()) == 2          # some patients have two studies


def test_plan_is_seeded_and_balanced():
    planned, test_cases = plan_cohort(40, 9, "mixed", 0.25)
    assert len(planned) == 40 and len({p.case_id for p in planned}) == 40
    assert sum(p.negative for p in planned) == 10
    assert {p.tracer for p in planned} == {"fdg", "psma"}
    assert {p.centre for p in planned} == set(range(len(CENTRES)))     # every scanner is represented
    patients = {p.patient for p in planned}
    assert len(patients) < 40 and {p.patient for p in planned if p.case_id in test_cases} < patients
    assert plan_cohort(40, 9, "mixed", 0.25) == (planned, test_cases)
    assert all(p.tracer == "psma" for p in plan_cohort(6, 9, "psma", 0.0)[0])


def test_clicks_are_valid_and_hit_the_lesions(cohort):
    for e in _entries(cohort):
        label = load_volume(e["label"], np.uint8).array
        clicks = read_clicks(e["clicks"], shape=label.shape, budget=10)
        if not label.any():
            assert clicks.tumor == []
        else:
            assert clicks.tumor and all(label[p] == 1 for p in clicks.tumor)
        assert all(label[p] == 0 for p in clicks.background)


def test_orientation_and_explicit_spacing():
    np.testing.assert_allclose(derive_spacing((400, 400, 326)), (2.04, 2.04, 3.0))
    case = generate_case("fdg_p_1", 2, (40, 40, 90), spacing=(10.0, 10.0, 12.0), clicks=False)
    np.testing.assert_allclose(case.spacing, (10.0, 10.0, 12.0))
    k_brain = np.argwhere(case.organs == OL["brain"])[:, 2].mean()
    k_bladder = np.argwhere(case.organs == OL["bladder"])[:, 2].mean()
    assert k_brain > k_bladder                         # k runs from the thighs up to the head
    assert (case.affine @ [0, 0, 10, 1])[2] > (case.affine @ [0, 0, 0, 1])[2]   # RAS: superior is +z
    assert case.pet.dtype == np.float32 and case.label.dtype == np.uint8 and case.organs.dtype == np.uint8


@pytest.mark.parametrize("args, message", [
    (["--cases", "0"], "--cases"),
    (["--cases", "2", "--negatives", "1.5"], "--negatives"),
    (["--cases", "2", "--shape", "4", "4", "4"], "--shape"),
    (["--cases", "2", "--spacing", "0", "2", "2"], "--spacing"),
    (["--cases", "2", "--tracer", "pib"], "--tracer"),
])
def test_bad_arguments_give_a_clear_error(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["phantoms", "--out", str(tmp_path / "o"), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_folder_of_another_cohort_is_refused(cohort, capsys):
    rc = cli_main(["phantoms", "--out", str(cohort), "--cases", "2", "--seed", "99", "--shape", *SHAPE])
    assert rc == 2
    err = capsys.readouterr().err
    assert str(cohort) in err and "another cohort" in err


def test_min_test_cases_split_holds_whole_patients_of_both_tracers_and_a_negative():
    for seed in (7, 1, 11, 21):
        planned, test_cases = plan_cohort(24, seed, "mixed", 0.4, min_test_cases=8)
        test = [p for p in planned if p.case_id in test_cases]
        assert len(test) >= 8 and {p.tracer for p in test} == {"fdg", "psma"}
        assert any(p.negative for p in test) and not all(p.negative for p in test)
        patients = {p.patient for p in test}
        assert all(p.case_id in test_cases for p in planned if p.patient in patients)  # whole patients
        assert len(test) <= 9  # patients are taken until 8 cases are reached; a patient has at most 2 studies
        assert plan_cohort(24, seed, "mixed", 0.4, min_test_cases=8) == (planned, test_cases)
        # the cases themselves do not depend on the split rule
        assert plan_cohort(24, seed, "mixed", 0.4)[0] == planned
    with pytest.raises(InputError, match="keep 2 patients"):
        plan_cohort(4, 0, "mixed", 0.4, min_test_cases=4)
