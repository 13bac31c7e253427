"""Post-processing rules on hand-made masks, the click-consistency guarantee, the tracer classifier."""

from __future__ import annotations

import numpy as np
import pytest

from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes, Volume
from petclick.postprocess import (DEFAULT_CONFIG, classify_tracer, enforce_clicks, make_config,
                                  merge_close_components, postprocess, recover_false_negatives,
                                  remove_small_components, suv_filter)
from petclick.postprocess.components import components

SHAPE = (32, 32, 32)


def cube(mask, lo, size):
    mask[tuple(slice(a, a + size) for a in lo)] = True
    return mask


def case_of(pet, spacing=(2.0, 2.0, 2.0)):
    affine = np.diag([*spacing, 1.0])
    return CaseVolumes(Volume(np.zeros_like(pet), affine), Volume(pet.astype(np.float32), affine))


def test_remove_small_uses_header_volume_and_protects_clicked():
    m = np.zeros(SHAPE, bool)
    cube(m, (2, 2, 2), 2)        # 8 voxels x 8 mm3 = 0.064 mL
    cube(m, (10, 10, 10), 5)     # 125 voxels = 1.0 mL
    cube(m, (20, 20, 20), 2)     # small but clicked
    out = remove_small_components(m, (2, 2, 2), 0.5, protect=[(20, 20, 20)])
    assert not out[2, 2, 2] and out[10:15, 10:15, 10:15].all() and out[20, 20, 20]
    assert out.sum() == 125 + 8
    # threshold exactly at a component's volume keeps it (>=)
    assert remove_small_components(m, (2, 2, 2), 1.0).sum() == 125


def test_suv_filter_drops_faint_components_by_suvmax():
    m = np.zeros(SHAPE, bool)
    pet = np.full(SHAPE, 0.5, np.float32)
    cube(m, (2, 2, 2), 4); pet[3, 3, 3] = 1.4           # SUVmax 1.4: dropped for FDG (1.5), kept for PSMA (1.0)
    cube(m, (12, 12, 12), 4); pet[13, 13, 13] = 6.0     # hot: kept
    cube(m, (24, 24, 24), 3)                            # SUVmax 0.5 but clicked: kept
    fdg = suv_filter(m, pet, 1.5, protect=[(25, 25, 25)])
    psma = suv_filter(m, pet, 1.0, protect=[(25, 25, 25)])
    assert not fdg[2:6, 2:6, 2:6].any() and fdg[12:16, 12:16, 12:16].all() and fdg[24:27, 24:27, 24:27].all()
    assert psma[2:6, 2:6, 2:6].all()
    assert not suv_filter(m, pet, 1.0)[24:27, 24:27, 24:27].any()


def test_merge_bridges_close_components_only():
    m = np.zeros(SHAPE, bool)
    cube(m, (4, 4, 4), 4)
    cube(m, (4, 4, 10), 4)      # gap of 2 voxels = 4 mm along k
    cube(m, (20, 20, 4), 3)     # far away
    assert components(m).n == 3
    out = merge_close_components(m, (2.0, 2.0, 2.0), distance_mm=5.0)
    assert components(out).n == 2
    assert out[4:8, 4:8, 8:10].all()                # the gap between the two cubes is filled
    assert out.sum() == m.sum() + 4 * 4 * 2          # and nothing else (convex bridge)
    assert (out[20:23, 20:23, 4:7] == m[20:23, 20:23, 4:7]).all()
    # closer than d is required: a 4 mm gap is not merged with d = 3 mm
    assert (merge_close_components(m, (2.0, 2.0, 2.0), 3.0) == m).all()


def test_merge_two_single_voxels_diagonal():
    m = np.zeros(SHAPE, bool)
    m[5, 5, 5] = m[7, 7, 5] = True
    out = merge_close_components(m, (1.0, 1.0, 1.0), 4.0)
    assert components(out).n == 1 and out[6, 6, 5]


def test_fn_recovery_adds_hot_new_unvetoed_components():
    prob = np.zeros(SHAPE, np.float32)
    pet = np.full(SHAPE, 0.5, np.float32)
    prob[2:6, 2:6, 2:6] = 0.9                                    # found lesion
    prob[6:8, 2:6, 2:6] = 0.3                                    # its halo (touches the mask): not added
    prob[12:15, 12:15, 12:15] = 0.3; pet[13, 13, 13] = 5.0       # missed hot lesion: added
    prob[20:23, 20:23, 20:23] = 0.3                              # missed but cold: not added
    prob[26:29, 26:29, 26:29] = 0.3; pet[27, 27, 27] = 5.0       # hot but background-clicked: not added
    mask = prob >= 0.5
    out = recover_false_negatives(mask, prob, pet, low=0.2, suv_min=3.0, background=[(28, 28, 28)])
    assert out[12:15, 12:15, 12:15].all()
    assert not out[6:8].any() and not out[20:23, 20:23, 20:23].any() and not out[26:29, 26:29, 26:29].any()
    assert out.sum() == mask.sum() + 27


def test_click_consistency_grow_from_probability_then_suv_then_voxel():
    pet = np.full(SHAPE, 0.5, np.float32)
    prob = np.zeros(SHAPE, np.float32)
    prob[4:8, 4:8, 4:8] = 0.3                          # sub-threshold region under click A
    pet[14:18, 14:18, 14:18] = 8.0                     # hot lesion the model missed, prob 0: click B
    mask = np.zeros(SHAPE, bool)
    clicks = Clicks([(5, 5, 5), (15, 15, 15), (28, 28, 28)], [])
    out = enforce_clicks(mask, clicks, pet, (2, 2, 2), prob=prob, low=0.2, suv_fraction=0.41)
    assert out[4:8, 4:8, 4:8].all()                    # A: the prob >= low component
    assert out[14:18, 14:18, 14:18].all()              # B: the SUV iso-contour (>= 41% of the 8.0 peak)
    assert out[28, 28, 28]                             # C: flat PET: at least the clicked voxel
    assert out.sum() == 64 + 64 + 1


def test_click_consistency_grow_respects_max_radius():
    pet = np.full(SHAPE, 5.0, np.float32)
    prob = np.full(SHAPE, 0.3, np.float32)             # the prob >= low region is everything
    out = enforce_clicks(np.zeros(SHAPE, bool), Clicks([(16, 16, 16)], []), pet, (1, 1, 1), prob=prob,
                         max_radius_mm=3.0)
    idx = np.argwhere(out)
    assert out[16, 16, 16] and np.sqrt(((idx - 16) ** 2).sum(1)).max() <= 3.0 and out.sum() == 123
    # flat uptake (the iso-contour fills the ball): only the min_radius ball around the click
    out = enforce_clicks(np.zeros(SHAPE, bool), Clicks([(16, 16, 16)], []), pet, (1, 1, 1), min_radius_mm=1.0)
    assert out.sum() == 7


def test_click_consistency_cut_removes_or_splits():
    pet = np.ones(SHAPE, np.float32)
    mask = np.zeros(SHAPE, bool)
    mask[2:6, 2:6, 2:6] = True                         # FP component with a background click: removed
    mask[10:14, 10:30, 10:14] = True                   # elongated: tumour click one end, background the other
    clicks = Clicks([(11, 12, 11)], [(3, 3, 3), (11, 27, 11)])
    out = enforce_clicks(mask, clicks, pet, (2, 2, 2))
    assert not out[2:6, 2:6, 2:6].any()
    assert out[11, 12, 11] and not out[11, 27, 11]
    # Voronoi split: voxels nearer the tumour click (j < 19.5) kept, the rest removed
    assert out[10:14, 10:20, 10:14].all() and not out[10:14, 20:30, 10:14].any()


@pytest.mark.parametrize("seed", range(12))
def test_click_consistency_guarantee_random(seed):
    rng = np.random.default_rng(seed)
    prob = rng.random(SHAPE).astype(np.float32) ** 3
    pet = (rng.random(SHAPE) * 6).astype(np.float32)
    pts = [tuple(int(v) for v in rng.integers(0, 32, 3)) for _ in range(8)]
    clicks = Clicks(pts[:4], [p for p in pts[4:] if p not in pts[:4]])
    case = case_of(pet)
    cfg = make_config(None, fn_recovery=True, min_volume=True, suv_filter=True, merge=True)
    out = postprocess(prob, case, clicks, "fdg", cfg)
    assert all(out[p] for p in clicks.tumor)
    assert not any(out[q] for q in clicks.background)


def test_pipeline_defaults_and_config():
    assert DEFAULT_CONFIG["click_consistency"]["enabled"]
    assert not any(DEFAULT_CONFIG[r]["enabled"] for r in ("fn_recovery", "min_volume", "suv_filter", "merge"))
    cfg = make_config({"merge": True, "min_volume": {"min_ml": 2.0}})
    assert cfg["merge"]["enabled"] and cfg["min_volume"]["min_ml"] == 2.0 and not cfg["min_volume"]["enabled"]
    with pytest.raises(InputError, match="unknown post-processing setting"):
        make_config({"merge": {"distance": 3}})
    prob = np.zeros(SHAPE, np.float32)
    prob[2:4, 2:4, 2:4] = 0.7
    pet = np.full(SHAPE, 0.5, np.float32)
    case = case_of(pet)
    # small component removed only when the rule is on
    assert postprocess(prob, case, None, "fdg").sum() == 8
    assert postprocess(prob, case, None, "fdg", {"min_volume": {"enabled": True, "min_ml": 0.1}}).sum() == 0
    with pytest.raises(InputError, match="differs from the PET grid"):
        postprocess(prob[:-1], case, None, "fdg")


def test_pipeline_yaml_config(tmp_path):
    cfg_file = tmp_path / "pp.yaml"
    cfg_file.write_text("postprocess:\n  suv_filter: {enabled: true, suv_min: {fdg: 4.0, psma: 1.0}}\n")
    cfg = make_config(cfg_file)
    assert cfg["suv_filter"]["enabled"] and cfg["suv_filter"]["suv_min"]["fdg"] == 4.0
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(InputError, match="bad.yaml"):
        make_config(tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="not found"):
        make_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("tracer", ["fdg", "psma"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tracer_classifier_on_phantoms(tracer, seed):
    from petclick.phantoms import generate_case
    c = generate_case(f"{tracer}_p_{seed}", seed, shape=(32, 32, 48), tracer=tracer, clicks=False)
    guess = classify_tracer(c.pet, c.affine)
    assert guess.tracer == tracer, guess
    # the same volume stored head-down (k flipped, affine adjusted) gives the same answer
    flipped = c.affine.copy()
    flipped[:, 2] *= -1
    flipped[:3, 3] = c.affine[:3, :3] @ [0, 0, c.pet.shape[2] - 1] + c.affine[:3, 3]
    assert classify_tracer(c.pet[:, :, ::-1], flipped).tracer == tracer


def test_tracer_from_pipeline_when_unknown():
    from petclick.phantoms import generate_case
    c = generate_case("x", 4, shape=(32, 32, 48), tracer="psma", clicks=False)
    case = CaseVolumes(Volume(c.ct, c.affine), Volume(c.pet, c.affine))
    prob = np.zeros(c.pet.shape, np.float32)
    prob[c.pet > 0.9] = 0.9
    # PSMA level 1.0 keeps components with SUVmax in [1.0, 1.5) that the FDG level 1.5 drops
    cfg = {"suv_filter": True, "click_consistency": False}
    auto = postprocess(prob, case, None, None, cfg)
    assert (auto == postprocess(prob, case, None, "psma", cfg)).all()


def test_monai_transforms_match_the_pipeline():
    from monai.data import MetaTensor

    from petclick.postprocess.transforms import PostProcess, PostProcessd
    rng = np.random.default_rng(3)
    prob = rng.random(SHAPE).astype(np.float32) ** 2
    pet = (rng.random(SHAPE) * 5).astype(np.float32)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    clicks = Clicks([(4, 5, 6)], [(20, 20, 20)])
    expected = postprocess(prob, case_of(pet, (2.0, 2.0, 3.0)), clicks, "fdg")
    out = PostProcess()(prob, pet, clicks, "fdg", affine=affine)
    np.testing.assert_array_equal(out, expected)
    data = {"pred": MetaTensor(prob[None], affine=affine), "pet": MetaTensor(pet[None], affine=affine),
            "clicks": {"tumor": np.array([[4.0, 5.0, 6.0]]), "background": np.array([[20.0, 20.0, 20.0]])},
            "tracer": "fdg"}
    res = PostProcessd("pred")(data)["pred"]
    assert isinstance(res, MetaTensor) and res.shape == (1, *SHAPE)
    np.testing.assert_array_equal(res[0].numpy(), expected.astype(np.uint8))
    np.testing.assert_allclose(res.affine.numpy(), affine)


def test_merge_effect_on_the_official_metrics():
    """A lesion predicted in two fragments, one outside the ground truth: merged, it is one lesion
    that overlaps the truth (no false-positive volume) and the filled gap raises Dice."""
    from petclick.metrics import lesion_metrics
    gt = np.zeros(SHAPE, bool)
    gt[4:8, 4:8, 4:10] = True
    pred = np.zeros(SHAPE, bool)
    pred[4:8, 4:8, 4:8] = True          # fragment inside the lesion
    pred[4:8, 4:8, 10:14] = True        # fragment just beyond it, 2 voxels (4 mm) away
    before = lesion_metrics(pred, gt, (2, 2, 2))
    after = lesion_metrics(merge_close_components(pred, (2, 2, 2), 5.0), gt, (2, 2, 2))
    assert before["fpv_ml"] == pytest.approx(64 * 8 / 1000) and after["fpv_ml"] == 0.0
    assert after["dice"] > before["dice"]


def test_postprocessed_predictor_in_the_protocol():
    """The wrapper makes the protocol score post-processed masks: tumour clicks are always covered."""
    from petclick.inference.protocol import run_protocol
    from petclick.phantoms import generate_case
    from petclick.postprocess import PostprocessedPredictor
    from petclick.inference.predictors import SuvThresholdPredictor
    c = generate_case("fdg_wrap_1", 2, shape=(32, 32, 48), tracer="fdg")
    case = CaseVolumes(Volume(c.ct, c.affine), Volume(c.pet, c.affine), Volume(c.label, c.affine))
    wrapped = PostprocessedPredictor(SuvThresholdPredictor())
    assert wrapped.name == "suv-threshold+pp"
    masks = {}
    rows = run_protocol(wrapped, case, c.clicks, steps=range(11), on_step=lambda k, m, cl: masks.setdefault(k, (m, cl)))
    assert len(rows) == 11 and wrapped._tracer_for[1] == "fdg"
    for k, (mask, clicks) in masks.items():
        assert all(mask[p] for p in clicks.tumor) and not any(mask[q] for q in clicks.background)


def test_click_consistency_grow_modes_for_a_clicked_lesion_the_mask_undersegments():
    """grow: missed leaves a covered click alone; always grows the model's prob >= low region; always-suv
    joins the SUV iso-contour; anything else is refused."""
    pet = np.full(SHAPE, 0.5, np.float32)
    pet[10:18, 10:18, 10:18] = 8.0                     # the lesion, 8^3 voxels
    prob = np.zeros(SHAPE, np.float32)
    prob[12:16, 12:16, 12:16] = 0.9                    # the model's too-small mask inside it
    prob[11:17, 11:17, 11:17] = np.maximum(prob[11:17, 11:17, 11:17], 0.3)
    mask = prob >= 0.5
    clicks = Clicks([(13, 13, 13)], [])
    kw = dict(prob=prob, low=0.2, suv_fraction=0.41)
    assert enforce_clicks(mask, clicks, pet, (2, 2, 2), **kw).sum() == 4 ** 3
    assert enforce_clicks(mask, clicks, pet, (2, 2, 2), grow="always", **kw).sum() == 6 ** 3
    out = enforce_clicks(mask, clicks, pet, (2, 2, 2), grow="always-suv", **kw)
    assert out.sum() == 8 ** 3 and out[10:18, 10:18, 10:18].all()
    with pytest.raises(ValueError, match="grow"):
        enforce_clicks(mask, clicks, pet, (2, 2, 2), grow="sometimes", **kw)
    cfg = make_config({"click_consistency": {"grow": "always-suv"}})
    assert cfg["click_consistency"]["grow"] == "always-suv"
    assert DEFAULT_CONFIG["click_consistency"]["grow"] == "suv-replace"


def test_click_consistency_every_tumour_click_stays_in_the_mask_without_background_clicks():
    """suv-replace: a later click re-delineates from its own peak, which may leave an earlier click's
    voxel outside its iso-contour; the clicked voxels are put back even when no background click is
    covered (a fuzz case found the early return that skipped it)."""
    pet = np.full(SHAPE, 1.0, np.float32)
    pet[12:16, 12:16, 12:16] = 6.0                     # a hot lesion
    mask = np.zeros(SHAPE, bool)
    mask[10:17, 10:17, 10:17] = True                   # the model's mask holds both clicks
    first, second = (10, 11, 12), (12, 13, 13)         # the first on cool tissue beside the lesion
    out = enforce_clicks(mask, Clicks([first, second], []), pet, (2, 2, 2), grow="suv-replace", suv_fraction=0.41)
    assert out[first] and out[second] and out[12:16, 12:16, 12:16].all()
    assert not out[10, 16, 16]                         # the model's bloat around the lesion gave way


def test_click_consistency_suv_replace_delineates_a_clicked_lesion_by_its_iso_contour():
    """suv-replace: inside the click's ball the model's oversegmentation connected to the click gives
    way to the iso-contour; a model finding elsewhere stays; flat uptake keeps the model's mask."""
    pet = np.full(SHAPE, 0.5, np.float32)
    pet[10:18, 10:18, 10:18] = 8.0                     # the lesion, 8^3 voxels
    mask = np.zeros(SHAPE, bool)
    mask[8:20, 8:20, 8:20] = True                      # the model's bloated mask around it
    mask[0:3, 0:3, 0:3] = True                         # and a finding far away, unclicked
    clicks = Clicks([(13, 13, 13)], [])
    out = enforce_clicks(mask, clicks, pet, (2, 2, 2), grow="suv-replace", suv_fraction=0.41)
    assert out[10:18, 10:18, 10:18].all() and out[8:20, 8:20, 8:20].sum() == 8 ** 3
    assert out[0:3, 0:3, 0:3].all()
    union = enforce_clicks(mask, clicks, pet, (2, 2, 2), grow="always-suv", suv_fraction=0.41)
    assert union[8:20, 8:20, 8:20].all()              # always-suv keeps the bloat
    flat = np.full(SHAPE, 2.0, np.float32)             # no bounded lesion: the model's mask stays
    kept = enforce_clicks(mask, clicks, flat, (2, 2, 2), grow="suv-replace", suv_fraction=0.41)
    assert kept[8:20, 8:20, 8:20].all()
    assert make_config({"click_consistency": {"grow": "suv-replace"}})["click_consistency"]["grow"] == "suv-replace"
