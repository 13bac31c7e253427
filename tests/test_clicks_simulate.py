"""The official click rule on hand-made labels, and `petclick simulate-clicks` end to end with its errors."""

import json

import numpy as np
import pytest
from scipy import ndimage

from petclick.cli import main
from petclick.clicks.simulate import Components, background_threshold, exceeds, simulate_clicks
from petclick.io.clickfile import read_clicks
from petclick.io.images import save_volume

SHAPE = (32, 32, 24)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])


def cube(mask, start, size):
    mask[tuple(slice(s, s + n) for s, n in zip(start, np.broadcast_to(size, 3)))] = 1
    return mask


def flat_pet(shape=SHAPE, seed=0):
    return np.random.default_rng(seed).normal(1.0, 0.1, shape).astype(np.float32)


def component_of(label, point):
    lab, _ = ndimage.label(label, structure=np.ones((3, 3, 3)))
    return int(lab[tuple(point)])


def test_centres_of_a_cube_and_a_sphere():
    label = cube(np.zeros(SHAPE, np.uint8), (3, 3, 3), 5)
    assert simulate_clicks(label, flat_pet(), budget=1).tumor == [(5, 5, 5)]
    zz = np.indices(SHAPE)
    sphere = (((zz - np.array([16, 17, 12])[:, None, None, None]) ** 2).sum(0) <= 36).astype(np.uint8)
    assert simulate_clicks(sphere, flat_pet(), budget=1).tumor == [(16, 17, 12)]


def test_ties_break_at_the_first_maximum_in_c_order():
    label = cube(np.zeros(SHAPE, np.uint8), (2, 6, 10), (4, 6, 4))  # EDT 2 on a 2x4x2 plateau
    assert simulate_clicks(label, flat_pet(), budget=1).tumor == [(3, 7, 11)]


def test_boundary_clicks_cycle_over_the_drawn_components():
    label = cube(cube(np.zeros(SHAPE, np.uint8), (2, 2, 2), 5), (15, 15, 10), 7)
    clicks = simulate_clicks(label, flat_pet(), budget=7, seed=3)
    t = clicks.tumor
    assert len(t) == 7 and set(t[:2]) == {(4, 4, 4), (18, 18, 13)}
    comps = [component_of(label, p) for p in t]
    assert comps[2:] == [comps[0], comps[1]] * 2 + [comps[0]]
    edt = ndimage.distance_transform_edt(label)
    assert all(edt[p] == 1.0 for p in t[2:])   # smallest positive EDT of a cube: its surface


def test_more_components_than_budget_draws_distinct_ones():
    label = np.zeros(SHAPE, np.uint8)
    starts = [(2, 2, 2), (2, 12, 2), (2, 22, 2), (14, 2, 12), (14, 12, 12), (14, 22, 12), (24, 24, 16)]
    for s in starts:
        cube(label, s, 3)
    centres = {tuple(int(c) + 1 for c in s) for s in starts}
    draws = set()
    for seed in range(6):
        t = simulate_clicks(label, flat_pet(), budget=3, seed=seed).tumor
        assert len(t) == 3 and len({component_of(label, p) for p in t}) == 3 and set(t) <= centres
        draws.add(tuple(t))
    assert len(draws) > 1  # the draw depends on the seed


@pytest.mark.parametrize("seed", [0, 1])
def test_background_threshold_equals_numpy_percentile(seed):
    rng = np.random.default_rng(seed)
    pet = rng.gamma(2.0, 1.0, (40, 36, 30)).astype(np.float32)
    label = np.zeros(pet.shape, bool)
    label[5:15, 5:15, 5:15] = True
    assert background_threshold(pet, label) == pytest.approx(np.percentile(pet[~label], 99.75), rel=1e-6)
    tied = np.minimum(pet, 2.0)  # clipped: the top values tie
    assert background_threshold(tied, label) == pytest.approx(np.percentile(tied[~label], 99.75), rel=1e-6)


def test_float64_pet_threshold_is_numpy_percentile_exactly():
    pet = np.random.default_rng(3).gamma(2.0, 1.0, (30, 20, 16))  # float64, as nibabel's get_fdata gives
    label = np.zeros(pet.shape, bool)
    assert background_threshold(pet, label) == np.percentile(pet, 99.75)


def test_threshold_between_adjacent_float32_values_keeps_the_voxels_above():
    # the p99.75 falls between two adjacent float32 values; a float32 comparison would round the
    # threshold up onto the upper one and lose every voxel above it (the challenge compares in float64)
    n = 4002                                   # (n - 1) * 0.9975 = 3990.9975: lo = 3990, fraction 0.9975
    values = np.linspace(0.0, 0.9, n).astype(np.float32)
    one = np.float32(1.0)
    values[3990], values[3991:] = one, np.nextafter(one, np.float32(2.0))
    pet = values.reshape(46, 87, 1).copy()
    label = np.zeros(pet.shape, np.uint8)
    official = pet.astype(np.float64) > np.percentile(pet.astype(np.float64), 99.75)
    assert official.sum() == 11
    clicks = simulate_clicks(label, pet, budget=3)
    assert len(clicks.background) == 3 and all(official[p] for p in clicks.background)


def test_exceeds_equals_the_float64_comparison():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float16):
        values = rng.normal(0, 10, 4000).astype(dtype)
        picks = np.sort(rng.choice(values.astype(np.float64), 200))
        nxt = np.nextafter(picks.astype(dtype), dtype(np.inf)).astype(np.float64)
        # thresholds on, between and just off representable values
        for t in np.concatenate([picks, (picks + nxt) / 2, picks + (nxt - picks) * 0.999, [np.inf, -np.inf]]):
            v64 = values.astype(np.float64)
            assert np.array_equal(exceeds(values, t), v64 > t)
            assert np.array_equal(exceeds(values, t, inclusive=True), v64 >= t)
    ints = np.arange(-5, 6, dtype=np.int16)
    assert np.array_equal(exceeds(ints, 0.5), ints > 0.5)


def test_negative_budget_or_offset_is_an_error():
    with pytest.raises(ValueError, match=">= 0"):
        simulate_clicks(np.zeros(SHAPE, np.uint8), flat_pet(), budget=-1)
    with pytest.raises(ValueError, match=">= 0"):
        simulate_clicks(np.zeros(SHAPE, np.uint8), flat_pet(), edge_offset=-2)


def test_background_clicks_on_hot_non_lesion_regions():
    pet = flat_pet()
    pet[20:26, 4:10, 4:10] = np.linspace(8.0, 9.0, 216).reshape(6, 6, 6)  # physiological uptake, graded
    label = cube(np.zeros(SHAPE, np.uint8), (4, 20, 10), 4)
    pet[label > 0] = 9.0
    clicks = simulate_clicks(label, pet, budget=10)
    thr = np.percentile(pet[label == 0], 99.75)
    assert len(clicks.background) == 10
    assert all(pet[p] > thr and label[p] == 0 for p in clicks.background)
    assert all(20 <= p[0] < 26 and 4 <= p[1] < 10 and 4 <= p[2] < 10 for p in clicks.background)


def test_tied_top_values_give_no_background_clicks():
    pet = flat_pet()
    pet[10:14, 10:14, 10:14] = 5.0    # 64 tied voxels > 0.25 % of the volume: threshold 5.0, nothing strictly above
    assert simulate_clicks(np.zeros(SHAPE, np.uint8), pet, budget=4).background == []


def test_empty_label_gives_background_clicks_only():
    pet = flat_pet()
    pet[10:14, 10:14, 10:14] = np.linspace(5.0, 6.0, 64).reshape(4, 4, 4)
    clicks = simulate_clicks(np.zeros(SHAPE, np.uint8), pet, budget=4)
    assert clicks.tumor == [] and len(clicks.background) == 4


def test_offsets_keep_clicks_inside_their_regions():
    label = cube(cube(np.zeros(SHAPE, np.uint8), (2, 2, 2), 6), (18, 18, 12), 3)
    pet = flat_pet()
    plain = simulate_clicks(label, pet, budget=10, seed=5)
    moved = simulate_clicks(label, pet, budget=10, seed=5, center_offset=3, edge_offset=3)
    thr = np.percentile(pet[label == 0], 99.75)
    assert all(label[p] for p in moved.tumor) and all(pet[p] > thr and not label[p] for p in moved.background)
    assert moved.tumor != plain.tumor  # some clicks did move


def test_seed_determinism():
    label = cube(cube(np.zeros(SHAPE, np.uint8), (2, 2, 2), 6), (18, 18, 12), 5)
    pet = flat_pet()
    a, b = simulate_clicks(label, pet, seed=7), simulate_clicks(label, pet, seed=7)
    assert a == b and len(a.tumor) == len(a.background) == 10
    assert simulate_clicks(label, pet, seed=8) != a


def test_components_sizes_and_regions():
    label = cube(cube(np.zeros(SHAPE, bool), (0, 0, 0), 2), (10, 10, 10), 3)
    comps = Components(label)
    assert len(comps) == 2 and sorted(comps.sizes.tolist()) == [8, 27]
    region = comps.region(int(np.argmax(comps.sizes)))
    assert region.mask.sum() == 27 and region.origin == (9, 9, 9) and region.mask.shape == (5, 5, 5)
    assert len(Components(np.zeros(SHAPE, bool))) == 0


# ---- CLI ---------------------------------------------------------------------------------------

@pytest.fixture()
def case(tmp_path):
    label = cube(cube(np.zeros(SHAPE, np.uint8), (2, 2, 2), 5), (15, 15, 10), 7)
    pet = flat_pet()
    pet[24:28, 4:8, 4:8] = np.linspace(6.0, 7.0, 64).reshape(4, 4, 4)
    return (save_volume(tmp_path / "label.nii.gz", label, AFFINE), save_volume(tmp_path / "pet.nii.gz", pet, AFFINE),
            label, pet)


def test_cli_writes_the_official_clicks(case, tmp_path):
    lab_path, pet_path, label, pet = case
    out = tmp_path / "c.json"
    assert main(["simulate-clicks", "--label", str(lab_path), "--pet", str(pet_path), "--out", str(out),
                 "--budget", "6", "--seed", "3"]) == 0
    expected = simulate_clicks(label, pet, budget=6, seed=3)
    assert read_clicks(out) == expected and set(json.loads(out.read_text())) == {"tumor", "background"}
    gc = tmp_path / "gc.json"
    assert main(["simulate-clicks", "--label", str(lab_path), "--pet", str(pet_path), "--out", str(gc),
                 "--budget", "6", "--seed", "3", "--format", "gc", "--center-offset", "1", "--edge-offset", "1"]) == 0
    data = json.loads(gc.read_text())
    assert data["type"] == "Multiple points" and len(data["points"]) == 12
    assert read_clicks(gc) == simulate_clicks(label, pet, budget=6, seed=3, center_offset=1, edge_offset=1)
    assert main(["simulate-clicks", "--label", str(lab_path), "--pet", str(pet_path), "--check", str(out),
                 "--budget", "6"]) == 0


def test_cli_bad_images(case, tmp_path, capsys):
    lab_path, pet_path, label, pet = case
    out = str(tmp_path / "c.json")
    two = save_volume(tmp_path / "two.nii.gz", label * 2, AFFINE)
    assert main(["simulate-clicks", "--label", str(two), "--pet", str(pet_path), "--out", out]) == 2
    assert "two.nii.gz" in capsys.readouterr().err
    small = save_volume(tmp_path / "small.nii.gz", label[:-1], AFFINE)
    assert main(["simulate-clicks", "--label", str(small), "--pet", str(pet_path), "--out", out]) == 2
    err = capsys.readouterr().err
    assert "small.nii.gz" in err and "shape" in err
    assert main(["simulate-clicks", "--label", str(tmp_path / "none.nii.gz"), "--pet", str(pet_path), "--out", out]) == 2
    assert "none.nii.gz" in capsys.readouterr().err
    assert main(["simulate-clicks", "--label", str(lab_path), "--pet", str(pet_path)]) == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate-clicks", "--label", str(lab_path), "--pet", str(pet_path), "--out", out, "--budget", "-1"])


@pytest.mark.parametrize("payload, message", [
    ({"tumor": [[40, 1, 1]], "background": []}, "click tumor[0] [40, 1, 1] lies outside"),
    ({"tumor": [[-1, 1, 1]]}, "click tumor[0] [-1, 1, 1] lies outside"),
    ({"tumor": [[1.5, 1, 1]]}, "fractional (1.5)"),
    ({"clicks": [[1, 1, 1]]}, "schema"),
    ({"tumor": [[1, 1, 1]] * 3 + [[2, 3, 4]]}, "exceed the budget of 3 (first one over it: tumor[3] [2, 3, 4])"),
    ({"points": [{"point": [1, 1, 1], "name": "lesion"}]}, "points[0]"),
])
def test_cli_check_names_the_file_and_the_click(case, tmp_path, capsys, payload, message):
    lab_path, pet_path, _, _ = case
    bad = tmp_path / "bad_clicks.json"
    bad.write_text(json.dumps(payload))
    assert main(["simulate-clicks", "--label", str(lab_path), "--pet", str(pet_path), "--check", str(bad),
                 "--budget", "3"]) == 2
    err = capsys.readouterr().err
    assert "bad_clicks.json" in err and message in err
