"""autoPET V scribbles: strokes on hand-made components, the error-driven step rule, JSON and the CLI."""

import json
import random

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import skeletonize
from skimage.segmentation import find_boundaries

from petclick.cli import main
from petclick.clicks.scribbles import add_scribble, largest_axial_component, scribble_step, simulate_stroke
from petclick.clicks.strokes import STRATEGIES, draw_stroke, farthest_pair
from petclick.io.clickfile import Clicks, read_clicks, write_clicks
from petclick.io.images import save_volume

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
LABELLINGS = ("official", "exact")


def as_set(pixels):
    return {tuple(int(v) for v in p) for p in pixels}


def n_components_8(pixels, shape):
    m = np.zeros(shape, bool)
    if len(pixels):
        m[tuple(np.asarray(pixels).T)] = True
    return ndimage.label(m, structure=np.ones((3, 3)))[1]


# ---- strokes on hand-made 2D components ---------------------------------------------------------

def line_component():
    m = np.zeros((10, 30), bool)
    m[4, 5:25] = True
    return m


def ring_component():
    yy, xx = np.mgrid[:41, :41]
    d = np.hypot(yy - 20, xx - 20)
    return (d >= 10) & (d <= 14)


def test_centerline_of_a_line_trims_ten_percent_from_each_end():
    stroke = draw_stroke(line_component(), "centerline")
    # 20 skeleton pixels: path[int(2.0):int(18.0)] keeps columns 7..22
    assert stroke.tolist() == [[4, x] for x in range(7, 23)]


def test_random_stroke_uses_two_draws_of_python_random_seeded_once():
    comp = line_component()
    coords = np.argwhere(comp)
    rng = random.Random(42)
    a, b = coords[rng.randint(0, len(coords) - 1)], coords[rng.randint(0, len(coords) - 1)]
    lo, hi = sorted((int(a[1]), int(b[1])))
    assert draw_stroke(comp, "random", 42).tolist() == [[4, x] for x in range(lo, hi + 1)]
    # the module-level generator seeded like the official code gives the same two draws
    random.seed(42)
    assert [random.randint(0, 19), random.randint(0, 19)] == [int(a[1]) - 5, int(b[1]) - 5]
    strokes = {tuple(map(tuple, draw_stroke(comp, "random", s).tolist())) for s in range(12)}
    assert len(strokes) > 3  # the seed matters


def test_boundary_walk_on_a_line_goes_left_first_for_at_most_a_fifth_of_the_boundary():
    comp = line_component()
    start = 5 + random.Random(7).randint(0, 19)
    stroke = draw_stroke(comp, "boundary", 7)
    # every line pixel is boundary (n = 20): at most max(2, 4) steps, neighbour (0, -1) tried before (0, +1)
    expected = [[4, x] for x in range(max(5, start - 4), start + 1)]
    assert stroke.tolist() == expected


def test_centerline_of_a_ring_is_a_trimmed_half_loop_on_its_skeleton():
    ring = ring_component()
    stroke = draw_stroke(ring, "centerline")
    skeleton = as_set(np.argwhere(skeletonize(ring)))
    assert as_set(stroke) <= skeleton
    assert n_components_8(stroke, ring.shape) == 1
    half = len(skeleton) / 2
    assert 0.7 * half <= len(stroke) <= 0.85 * half + 2
    # a simple path: no pixel has more than two stroke neighbours
    s = as_set(stroke)
    assert max(sum((y + dy, x + dx) in s for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx) for y, x in s) <= 2


def test_boundary_walk_on_a_ring_stays_on_the_inner_boundary():
    ring = ring_component()
    boundary = find_boundaries(ring.astype(np.uint8), mode="inner")
    for seed in (0, 42, 99):
        stroke = draw_stroke(ring, "boundary", seed)
        assert as_set(stroke) <= as_set(np.argwhere(boundary))
        assert n_components_8(stroke, ring.shape) == 1
        assert 2 <= len(stroke) <= int(0.2 * boundary.sum()) + 1


def test_random_stroke_across_a_concavity_keeps_only_component_pixels():
    ring = ring_component()
    strokes = [draw_stroke(ring, "random", s) for s in range(40)]
    assert all(as_set(st) <= as_set(np.argwhere(ring)) for st in strokes)
    assert any(n_components_8(st, ring.shape) > 1 for st in strokes)  # a chord through the hole breaks


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_one_voxel_component_is_its_own_stroke(strategy):
    comp = np.zeros((5, 6), bool)
    comp[2, 3] = True
    assert draw_stroke(comp, strategy).tolist() == [[2, 3]]


def test_farthest_pair_is_the_first_maximum_in_c_order():
    coords = np.array([[0, 0], [0, 2], [2, 0], [2, 2]])  # both diagonals are maximal
    assert farthest_pair(coords) == (0, 3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = rng.integers(0, 40, (int(rng.integers(2, 600)), 2))
        d = ((c[:, None] - c[None]) ** 2).sum(-1)
        assert farthest_pair(c) == tuple(int(v) for v in np.unravel_index(d.argmax(), d.shape))


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown scribble strategy"):
        draw_stroke(line_component(), "zigzag")


# ---- the volume rule ----------------------------------------------------------------------------

def box(shape, lo, hi):
    m = np.zeros(shape, np.uint8)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1
    return m


@pytest.mark.parametrize("labelling", LABELLINGS)
def test_largest_component_over_axial_slices_and_ties(labelling):
    m = np.zeros((20, 20, 8), bool)
    m[2:5, 2:5, 1] = True          # 9 pixels on slice 1
    m[10:14, 10:13, 3] = True      # 12 pixels on slice 3
    m[1:4, 14:18, 6] = True        # 12 pixels on slice 6: a tie, the lower slice wins
    comp = largest_axial_component(m, labelling)
    assert comp.z == 3 and comp.area == 12
    full = np.zeros((20, 20), bool)
    full[comp.origin[0]:comp.origin[0] + comp.mask.shape[0], comp.origin[1]:comp.origin[1] + comp.mask.shape[1]] = comp.mask
    assert np.array_equal(full, m[:, :, 3])
    # two equal components on one slice: the first in column-major order (how cc3d numbers nibabel's arrays)
    t = np.zeros((12, 12, 2), bool)
    t[1:3, 8:10, 0] = True         # rows 1-2, columns 8-9: first in C order
    t[8:10, 1:3, 0] = True         # rows 8-9, columns 1-2: first in Fortran order
    comp = largest_axial_component(t, labelling)
    got = np.argwhere(comp.mask) + np.array(comp.origin)
    assert as_set(got) == {(8, 1), (8, 2), (9, 1), (9, 2)}


def test_empty_mask_has_no_component_or_stroke():
    assert largest_axial_component(np.zeros((4, 4, 4), bool)) is None
    assert simulate_stroke(np.zeros((4, 4, 4), bool), "random") == []


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_stroke_voxels_are_ijk_indices_on_one_axial_slice(strategy):
    m = box((30, 30, 10), (5, 8, 2), (20, 14, 7))
    pts = simulate_stroke(m, strategy)
    assert pts and all(m[p] for p in pts)
    assert {p[2] for p in pts} == {2}   # the first of the five equal slices
    assert pts == sorted(pts)           # C order, as the official loop lists them


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_step_without_false_positives_adds_a_tumour_stroke(strategy):
    label = box((32, 32, 12), (4, 4, 2), (20, 20, 9))
    pred = box((32, 32, 12), (4, 4, 2), (12, 20, 9))   # misses half the lesion, no FP
    step = scribble_step(pred, label, strategy)
    assert step.kind == "tumor" and step.background_voxels == 0 and step.tumor_voxels == len(step.points) > 0
    assert all(label[p] and not pred[p] for p in step.points)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_step_without_false_negatives_adds_a_background_stroke(strategy):
    label = box((32, 32, 12), (4, 4, 2), (10, 10, 6))
    pred = label | box((32, 32, 12), (18, 18, 3), (28, 28, 10))   # the lesion plus a false positive
    step = scribble_step(pred, label, strategy)
    assert step.kind == "background" and step.tumor_voxels == 0 and len(step.points) == step.background_voxels > 0
    assert all(pred[p] and not label[p] for p in step.points)


def test_perfect_and_lesion_free_steps_add_nothing():
    label = box((16, 16, 8), (2, 2, 2), (6, 6, 5))
    perfect = scribble_step(label.copy(), label, "centerline")
    assert perfect.kind is None and perfect.points == [] and "equals" in perfect.reason
    empty = np.zeros_like(label)
    fp_only = scribble_step(label, empty, "random")   # a false positive on a lesion-free case: still nothing
    assert fp_only.kind is None and "lesion-free" in fp_only.reason


def test_tumour_stroke_wins_ties_and_the_bigger_stroke_wins_otherwise():
    shape = (40, 40, 6)
    label = box(shape, (2, 2, 2), (3, 12, 3))            # a missed 10-voxel line lesion
    pred = box(shape, (20, 2, 2), (21, 12, 3))           # a 10-voxel line false positive
    # a centerline of <= 10 pixels is not trimmed: both strokes have 10 voxels, the tumour stroke wins
    step = scribble_step(pred, label, "centerline")
    assert (step.tumor_voxels, step.background_voxels, step.kind) == (10, 10, "tumor")
    bigger_fp = box(shape, (20, 2, 2), (21, 16, 3))      # 14 pixels: path[1:12] keeps 11 > 10
    step = scribble_step(bigger_fp, label, "centerline")
    assert (step.tumor_voxels, step.background_voxels, step.kind) == (10, 11, "background")
    assert all(p[0] == 20 for p in step.points)


@pytest.mark.parametrize("labelling", LABELLINGS)
def test_the_step_rule_in_both_labellings_on_a_smooth_case(labelling):
    zz = np.indices((40, 40, 16))
    label = (((zz - np.array([20, 20, 8])[:, None, None, None]) ** 2).sum(0) <= 36).astype(np.uint8)
    pred = np.roll(label, 3, axis=0)
    steps = {s: scribble_step(pred, label, s, labelling=labelling) for s in STRATEGIES}
    for s, step in steps.items():
        region = (label & ~pred) if step.kind == "tumor" else (pred & ~label)
        assert step.kind in ("tumor", "background") and all(region[p] for p in step.points), s


def test_exact_labelling_keeps_every_stroke_inside_its_error_region():
    rng = np.random.default_rng(3)
    for _ in range(30):
        shape = tuple(int(v) for v in rng.integers(6, 24, 3))
        label = np.zeros(shape, np.uint8)
        label[tuple(int(rng.integers(0, s)) for s in shape)] = 1
        pred = (rng.random(shape) < 0.06).astype(np.uint8) | label
        for strategy in STRATEGIES:
            step = scribble_step(pred, label, strategy, labelling="exact")
            assert step.kind == "background" and all(pred[p] and not label[p] for p in step.points)


def test_add_scribble_accumulates_and_keeps_duplicates():
    prev = Clicks([(1, 2, 3)], [(4, 5, 6)])
    label = box((16, 16, 8), (2, 2, 2), (3, 8, 3))
    step = scribble_step(np.zeros_like(label), label, "centerline")
    out = add_scribble(prev, step)
    assert out.tumor == [(1, 2, 3)] + step.points and out.background == [(4, 5, 6)]
    again = add_scribble(out, step)   # an ignored scribble comes back identical: the official loop appends it again
    assert again.tumor == out.tumor + step.points
    assert prev.tumor == [(1, 2, 3)]   # the previous scribbles are not modified


# ---- JSON and CLI -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ("plain", "gc"))
def test_scribble_json_round_trip(tmp_path, fmt):
    scribbles = Clicks([(163, 118, 123), (164, 113, 123), (163, 118, 123)], [(162, 116, 126)])
    path = write_clicks(tmp_path / f"s_{fmt}.json", scribbles, fmt)
    data = json.loads(path.read_text())
    if fmt == "gc":
        assert data["type"] == "Multiple points" and len(data["points"]) == 4
        assert [p["name"] for p in data["points"]] == ["tumor"] * 3 + ["background"]
    else:
        assert data == {"tumor": [[163, 118, 123], [164, 113, 123], [163, 118, 123]], "background": [[162, 116, 126]]}
    assert read_clicks(path, budget=None) == scribbles
    assert [p.name for p in tmp_path.iterdir()] == [path.name]   # the atomic write leaves no temporary file


def write_case(tmp_path, label, pred):
    save_volume(tmp_path / "label.nii.gz", label, AFFINE, np.uint8)
    save_volume(tmp_path / "pred.nii.gz", pred, AFFINE, np.uint8)
    return tmp_path / "label.nii.gz", tmp_path / "pred.nii.gz"


def test_cli_writes_cumulative_scribbles_in_both_formats(tmp_path, capsys):
    label = box((24, 24, 10), (3, 3, 2), (15, 15, 8))
    pred = box((24, 24, 10), (3, 3, 2), (9, 15, 8))
    lab, prd = write_case(tmp_path, label, pred)
    earlier = [(i, 20, 0) for i in range(20)]   # scribbles are not held to the 10-click budget
    prev = write_clicks(tmp_path / "iter_0_scribbles.json", Clicks(earlier, [(0, 0, 0)]), "gc")
    out = tmp_path / "iter_1_scribbles.json"
    args = ["simulate-scribbles", "--label", str(lab), "--pred", str(prd), "--strategy", "centerline"]
    assert main(args + ["--previous", str(prev), "--out", str(out)]) == 0
    assert "tumor stroke" in capsys.readouterr().out
    got = read_clicks(out, budget=None)
    step = scribble_step(pred, label, "centerline")
    assert got.tumor == earlier + step.points and got.background == [(0, 0, 0)]
    gc = tmp_path / "lesion-clicks.json"
    assert main(args + ["--previous", str(out), "--out", str(gc), "--format", "gc", "--seed", "42"]) == 0
    data = json.loads(gc.read_text())
    assert data["type"] == "Multiple points"
    assert sum(p["name"] == "tumor" for p in data["points"]) == 20 + 2 * len(step.points)


def test_cli_lesion_free_case_copies_the_previous_scribbles(tmp_path, capsys):
    lab, prd = write_case(tmp_path, np.zeros((8, 8, 4), np.uint8), box((8, 8, 4), (1, 1, 1), (3, 3, 3)))
    out = tmp_path / "s.json"
    assert main(["simulate-scribbles", "--label", str(lab), "--pred", str(prd), "--strategy", "random",
                 "--out", str(out)]) == 0
    assert "lesion-free" in capsys.readouterr().out
    assert json.loads(out.read_text()) == {"tumor": [], "background": []}


@pytest.mark.parametrize("content, problem", [
    ("{not json", "malformed JSON"),
    ('{"tumor": [[1, 2]]}', "has 2 coordinates"),
    ('{"points": [{"point": [1, 2, 3], "name": "lesion"}]}', "expected 'tumor' or 'background'"),
    ('{"tumor": [[1, 2, 300]]}', "outside the volume"),
    ('{"scribbles": []}', "unknown click-file schema"),
])
def test_cli_malformed_previous_scribbles_name_the_file(tmp_path, capsys, content, problem):
    lab, prd = write_case(tmp_path, box((8, 8, 4), (1, 1, 1), (3, 3, 3)), np.zeros((8, 8, 4), np.uint8))
    prev = tmp_path / "previous.json"
    prev.write_text(content)
    out = tmp_path / "s.json"
    rc = main(["simulate-scribbles", "--label", str(lab), "--pred", str(prd), "--strategy", "boundary",
               "--previous", str(prev), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(prev) in err and problem in err
    assert not out.exists()


def test_cli_bad_volumes_exit_2(tmp_path, capsys):
    lab, prd = write_case(tmp_path, box((8, 8, 4), (1, 1, 1), (3, 3, 3)), np.zeros((8, 8, 4), np.uint8))
    save_volume(tmp_path / "prob.nii.gz", np.full((8, 8, 4), 0.5, np.float32), AFFINE)
    save_volume(tmp_path / "small.nii.gz", np.zeros((8, 8, 3), np.uint8), AFFINE)
    base = ["simulate-scribbles", "--label", str(lab), "--strategy", "random", "--out", str(tmp_path / "s.json")]
    for pred, problem in ((tmp_path / "prob.nii.gz", "binary"), (tmp_path / "small.nii.gz", "shape"),
                          (tmp_path / "missing.nii.gz", "not found")):
        assert main(base + ["--pred", str(pred)]) == 2
        err = capsys.readouterr().err
        assert str(pred) in err and problem in err
    assert main(["simulate-scribbles", "--label", str(lab), "--pred", str(prd), "--strategy", "random",
                 "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
