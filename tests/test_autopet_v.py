"""autoPET V part B: the scribble protocol on the step loop, the scribble curriculum, the stroke encoding."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from petclick.cli import main as cli_main
from petclick.clicks.click_curriculum import ClickCurriculum
from petclick.clicks.curriculum import SimulateTrainingClicksd, curriculum_from_config
from petclick.clicks.encoding import EncodeClicks, EncodeClicksd
from petclick.clicks.packing import PackClicksd, unpack_clicks
from petclick.clicks.scribble_curriculum import ScribbleCurriculum
from petclick.clicks.scribbles import STRATEGY_ORDER, case_strategies
from petclick.core.errors import InputError
from petclick.inference.protocol import run_protocol
from petclick.inference.predictors import SuvThresholdPredictor
from petclick.io.clickfile import read_clicks
from petclick.io.images import CaseVolumes, Volume, save_volume
from petclick.metrics.report import read_cases_csv

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
SHAPE = (20, 20, 12)
A = np.s_[2:7, 2:7, 2:6]        # lesion, SUV 6
B = np.s_[12:15, 12:15, 6:9]    # lesion, SUV 2 (missed by the SUV 2.5 threshold)
C = np.s_[2:6, 12:17, 7:10]     # physiological uptake, SUV 8


def scribble_case() -> CaseVolumes:
    pet = np.ones(SHAPE, np.float32)
    pet[A], pet[B], pet[C] = 6.0, 2.0, 8.0
    label = np.zeros(SHAPE, np.uint8)
    label[A] = label[B] = 1
    return CaseVolumes(Volume(np.zeros(SHAPE, np.float32), AFFINE), Volume(pet, AFFINE), Volume(label, AFFINE))


class Fixed:
    """A predictor that returns masks in turn (the last one from then on) and counts its calls."""

    name = "fixed"

    def __init__(self, *masks):
        self.masks, self.calls = [m.astype(np.float32) for m in masks], []

    def predict(self, case, clicks):
        self.calls.append(clicks)
        return self.masks[min(len(self.calls) - 1, len(self.masks) - 1)]


# ---- the protocol ---------------------------------------------------------------------------

def test_autopet_v_has_six_steps_and_scribbles_accumulate_and_change_the_prediction():
    case = scribble_case()
    rows = run_protocol(SuvThresholdPredictor(), case, case_id="fdg_x_1", tracer="fdg", protocol="autopet-v",
                        strategy="random")
    assert [r["step"] for r in rows] == list(range(6))
    assert rows[0]["n_tumor_clicks"] == rows[0]["n_background_clicks"] == 0
    sizes = [(r["n_tumor_clicks"], r["n_background_clicks"]) for r in rows]
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(sizes, sizes[1:]))     # cumulative
    assert sum(sizes[-1]) > 0
    for prev, cur in zip(rows, rows[1:]):                                            # earlier scribbles kept
        assert cur["tumor_clicks"][:len(prev["tumor_clicks"])] == prev["tumor_clicks"]
        assert cur["background_clicks"][:len(prev["background_clicks"])] == prev["background_clicks"]
    # step 0: the SUV threshold finds A (100 voxels) and the physiological region C (60, a false
    # positive), misses B (27): Dice 2*100/(127+160), DMM 2TP/(2TP+FP+FN) = 2/4. Step 1: C's random
    # stroke (4 voxels) is longer than B's (2): a background stroke, which removes C.
    assert rows[0]["dice"] == pytest.approx(2 * 100 / (127 + 160)) and rows[0]["dmm"] == pytest.approx(0.5)
    assert (rows[1]["n_tumor_clicks"], rows[1]["n_background_clicks"]) == (0, 4)
    assert rows[1]["fpv_ml"] == 0.0 and rows[1]["dice"] == pytest.approx(200 / 227) and rows[1]["dmm"] == pytest.approx(2 / 3)
    # then B's tumour stroke each step: the suv-threshold baseline cannot use a click below its
    # threshold, so B stays missed and the same seeded stroke is appended again (duplicates kept)
    assert [r["n_tumor_clicks"] for r in rows[2:]] == [2, 4, 6, 8]
    assert rows[3]["tumor_clicks"] == rows[2]["tumor_clicks"] * 2
    for r in rows:   # every scribble voxel lies where its kind says: tumour on the label, background off it
        label = case.label.array
        assert all(label[tuple(p)] == 1 for p in r["tumor_clicks"])
        assert all(label[tuple(p)] == 0 for p in r["background_clicks"])


def test_step_without_false_positives_adds_a_tumour_stroke_and_without_false_negatives_a_background_one():
    case = scribble_case()
    label = case.label.array.astype(bool)
    only_a = np.zeros(SHAPE, bool)
    only_a[A] = True                                     # no FP region: B missed
    with_c = label.copy()
    with_c[C] = True                                     # no FN region: C too much
    for mask, kind in ((only_a, "tumor"), (with_c, "background")):
        p = Fixed(mask)
        rows = run_protocol(p, case, protocol="autopet-v", steps=range(2), strategy="random")
        other = "background" if kind == "tumor" else "tumor"
        assert rows[1][f"n_{kind}_clicks"] > 0 and rows[1][f"n_{other}_clicks"] == 0
        assert len(p.calls) == 2


def test_a_perfect_prediction_adds_nothing_and_computes_nothing_more():
    case = scribble_case()
    p = Fixed(case.label.array)
    rows = run_protocol(p, case, protocol="autopet-v", strategy="boundary")
    assert len(rows) == 6 and len(p.calls) == 1
    assert all(r["dice"] == 1.0 and r["dmm"] == 1.0 and r["n_tumor_clicks"] == 0 for r in rows)


def test_scribble_mode_is_the_only_mode_of_autopet_v():
    with pytest.raises(ValueError, match="scribbles"):
        run_protocol(SuvThresholdPredictor(), scribble_case(), protocol="autopet-v", mode="error-driven")
    with pytest.raises(ValueError, match="official"):
        run_protocol(SuvThresholdPredictor(), scribble_case(), protocol="autopet-iv", mode="scribbles")


def test_strategies_are_dealt_round_robin_over_sorted_case_ids():
    ids = [f"fdg_{n:02d}_x" for n in range(9)][::-1]
    got = case_strategies(ids)
    assert [got[c] for c in sorted(ids)] == list(STRATEGY_ORDER) * 3
    assert case_strategies(ids[:4]) == case_strategies(sorted(ids[:4]))


def test_interactive_autopet_v_writes_the_edition_report(tmp_path, capsys, tiny_model):
    case = scribble_case()
    root = tmp_path / "data"
    entries = []
    for cid, lesions in (("fdg_p1_2020", True), ("psma_p2_2021", True), ("fdg_p3_2020", False)):
        label = case.label.array if lesions else np.zeros(SHAPE, np.uint8)
        save_volume(root / f"{cid}_0000.nii.gz", case.ct.array, AFFINE)
        save_volume(root / f"{cid}_0001.nii.gz", case.pet.array, AFFINE)
        save_volume(root / f"{cid}_label.nii.gz", label, AFFINE)
        entries.append({"image": f"{cid}_0000.nii.gz", "pet": f"{cid}_0001.nii.gz", "label": f"{cid}_label.nii.gz"})
    (root / "datalist.json").write_text(json.dumps({"testing": entries}))
    out = tmp_path / "report"
    rc = cli_main(["interactive", "--protocol", "autopet-v", "--steps", "3", "--predictor", "suv-threshold",
                   "--datalist", str(root / "datalist.json"), "--out", str(out), "--no-mip", "--save-predictions"])
    assert rc == 0
    rows = read_cases_csv(out / "cases.csv")
    assert len(rows) == 9 and {r["step"] for r in rows} == {0, 1, 2}
    assert all("dmm" in r for r in rows)
    neg = [r for r in rows if r["case"] == "fdg_p3_2020"]
    assert all(r["n_tumor_clicks"] == r["n_background_clicks"] == 0 for r in neg)   # lesion-free: no scribbles
    assert all(r["dice"] == 0.0 and math.isnan(r["dmm"]) for r in neg)              # C is a false positive
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategies"] == {"fdg_p1_2020": "centerline", "fdg_p3_2020": "random",
                                             "psma_p2_2021": "boundary"}
    assert summary["auc_dmm"]["mean_over_cases_with_lesions"]["n"] == 2
    saved = read_clicks(out / "predictions" / "fdg_p1_2020_scribbles2.json", budget=None)
    last = [r for r in rows if r["case"] == "fdg_p1_2020" and r["step"] == 2][0]
    assert [list(p) for p in saved.background] == last["background_clicks"]
    assert "AUC-DMM, mean over cases with lesions" in capsys.readouterr().out
    model = tmp_path / "model_report"                   # a trained-model predictor through the same loop
    assert cli_main(["interactive", "--protocol", "autopet-v", "--steps", "2", "--predictor", str(tiny_model),
                     "--datalist", str(root / "datalist.json"), "--out", str(model), "--no-mip",
                     "--cases", "fdg_p1_2020"]) == 0
    mrows = read_cases_csv(model / "cases.csv")
    assert [r["step"] for r in mrows] == [0, 1] and sum(mrows[1][f"n_{k}_clicks"] for k in ("tumor", "background")) > 0
    assert cli_main(["interactive", "--protocol", "autopet-v", "--mode", "official", "--predictor", "suv-threshold",
                     "--datalist", str(root / "datalist.json"), "--out", str(out)]) == 2


# ---- the scribble curriculum ------------------------------------------------------------------

def patch():
    rng = np.random.default_rng(3)
    pet = rng.uniform(0.5, 1.5, (24, 24, 20)).astype(np.float32)
    label = np.zeros(pet.shape, np.float32)
    label[4:10, 4:11, 5:12] = 1
    label[15:19, 14:20, 3:8] = 1
    pet[label > 0] = 6.0
    pet[14:20, 2:7, 12:18] = 9.0   # hot, not a lesion
    return label, pet


def test_scribble_curriculum_gives_scribble_channels_of_the_right_shape():
    label, pet = patch()
    image = torch.stack([torch.zeros(label.shape), torch.as_tensor(pet)])
    cfg = {"kind": "scribbles", "count": "log", "paired": False, "background": "patch",
           "scribbles": {"steps": "full", "max_steps": 4, "miss": 1.0}}   # both lesions missed, one hot region
    sim = SimulateTrainingClicksd(label_key="label", pet_key=1, curriculum=cfg)
    sim.set_random_state(0)
    d = sim({"image": image, "label": torch.as_tensor(label)[None]})
    clicks = d["clicks"]
    assert clicks["tumor"].shape[1] == 3 and clicks["background"].shape[1] == 3
    assert len(clicks["tumor"]) > 2 and len(clicks["background"]) > 2  # three errors: three strokes
    assert all(label[tuple(p.astype(int))] == 1 for p in clicks["tumor"])
    assert all(label[tuple(p.astype(int))] == 0 for p in clicks["background"])
    for p in (clicks["tumor"], clicks["background"]):                 # each stroke on one axial slice
        assert len(p) == 0 or len(np.unique(p[:, 2])) <= 4
    packed = PackClicksd("clicks", sim.curriculum.capacity)(d)["clicks"]
    assert packed.shape == (2, 1024, 3)
    back = unpack_clicks(packed)
    np.testing.assert_array_equal(back["tumor"].numpy(), clicks["tumor"].astype(np.float32))
    enc = EncodeClicksd(encoding="stroke", sigma=2.0)(d)["image"]
    assert enc.shape == (4, *label.shape)
    assert float(enc[2].max()) > 0.3 and float(enc[2][label == 0].max()) < float(enc[2].max())
    sim.set_random_state(0)
    again = sim({"image": image, "label": torch.as_tensor(label)[None]})["clicks"]
    np.testing.assert_array_equal(again["tumor"], clicks["tumor"])


def test_scribble_curriculum_config_and_the_curriculum_registry():
    assert isinstance(curriculum_from_config({"count": "log"}), ClickCurriculum)
    c = curriculum_from_config({"kind": "scribbles", "background": "case", "scribbles": {"max_points": 50}})
    assert isinstance(c, ScribbleCurriculum) and c.capacity == 50 and c.background == "case" and c.max_steps == 5
    for bad, word in (({"kind": "strokes"}, "strokes"), ({"kind": "scribbles", "scribbles": {"stpes": 2}}, "stpes"),
                      ({"kind": "scribbles", "scribbles": {"strategies": {"zigzag": 1}}}, "zigzag"),
                      ({"kind": "scribbles", "scribbles": {"miss": 2}}, "miss"),
                      ({"kind": "scribbles", "extra": 1}, "extra")):
        with pytest.raises(InputError, match=word):
            curriculum_from_config(bad)
    with pytest.raises(InputError, match="kind"):
        ClickCurriculum.from_config({"kind": "scribbles"})


def test_no_scribbles_on_a_lesion_free_patch_or_at_zero_steps():
    label, pet = patch()
    c = curriculum_from_config({"kind": "scribbles", "scribbles": {"steps": "full"}})
    rng = np.random.default_rng(0)
    out = c.sample_clicks(np.zeros_like(label), pet, rng)
    assert out["tumor"].shape == (0, 3) and out["background"].shape == (0, 3)
    zero = curriculum_from_config({"kind": "scribbles", "scribbles": {"steps": [1, 0, 0, 0, 0, 0]}})
    assert sum(len(v) for v in zero.sample_clicks(label, pet, rng).values()) == 0


def test_scribble_curriculum_trains_a_tiny_network(tmp_path, tiny_cohort):
    """The training chain (batch transforms: packed scribbles, encoded on the batch) runs with kind scribbles."""
    from petclick.config.presets import get_preset
    from petclick.core.yamlio import deep_merge
    from petclick.training.data import batch_stage, fold_files, train_dataset, train_loader

    cfg = deep_merge(get_preset("demo"), {"clicks": {"curriculum": {"kind": "scribbles"},
                                                     "encoding": {"encoding": "stroke", "sigma": 2.0}},
                                          "data": {"cache_rate": 0.0, "roi": [32, 32, 32], "spacing": None}})
    files = fold_files(tiny_cohort, tiny_cohort.parent, 0)
    loader = train_loader(cfg, train_dataset(cfg, files.train[:2], [32, 32, 32]), seed=0)
    batch = next(iter(loader))
    assert batch["clicks"].shape[-2:] == (1024, 3)
    image = batch_stage(cfg)(batch)["image"]
    assert image.shape[1:] == (4, 32, 32, 32)
    assert float(image[:, 2:].abs().sum()) >= 0.0 and torch.isfinite(image).all()


# ---- the stroke encoding --------------------------------------------------------------------

def test_stroke_encoding_values():
    sigma = 2.0
    line = np.array([[10, j, 8] for j in range(4, 31)], float)
    enc = EncodeClicks("stroke", sigma=sigma)
    assert enc.combine == "sum"
    image = torch.zeros(2, 21, 35, 17)
    ch = enc.click_channels(image, {"tumor": line, "background": line[:1]})
    assert float(ch[0, 10, 17, 8]) == pytest.approx(1.0, abs=2e-3)                 # middle of a straight stroke
    lone = 1 / (math.sqrt(2 * math.pi) * sigma)
    assert float(ch[0, 10, 4, 8]) == pytest.approx(0.5 + lone / 2, abs=2e-3)       # its end: half a line
    assert float(ch[1, 10, 4, 8]) == pytest.approx(lone, rel=1e-5)                  # a lone voxel
    def truncated_line_sum(dz):   # the kernels of the stroke's voxels within 3 sigma of a voxel dz slices off
        return sum(math.exp(-(j * j + dz * dz) / (2 * sigma ** 2)) * lone for j in range(-13, 14)
                   if j * j + dz * dz <= (3 * sigma) ** 2)
    assert float(ch[0, 10, 17, 8]) == pytest.approx(truncated_line_sum(0), rel=1e-5)
    assert float(ch[0, 10, 17, 9]) == pytest.approx(truncated_line_sum(1), rel=1e-5)           # one slice off
    twice = enc.click_channels(image, {"tumor": np.concatenate([line, line])})
    np.testing.assert_allclose(twice[0].numpy(), 2 * ch[0].numpy(), rtol=1e-5, atol=1e-7)   # repeated stroke
    far = ch[0].numpy()[np.ix_(range(21), range(35), range(17))]
    assert far[10, 17, 8 + 7] == 0.0                                                   # truncated at 3 sigma


def test_edt_of_stroke_voxels_is_the_truncated_edt_of_the_stroke_mask():
    rng = np.random.default_rng(0)
    mask = np.zeros((18, 22, 9), bool)
    mask[rng.integers(0, 18, 40), rng.integers(0, 22, 40), 4] = True
    enc = EncodeClicks("edt", radius=4)
    got = enc.click_channels(torch.zeros(2, *mask.shape), {"tumor": np.argwhere(mask).astype(float)})[0].numpy()
    want = np.clip(1 - ndimage.distance_transform_edt(~mask) / 4, 0, None)
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("cfg", [{"encoding": "edt", "radius": 3}, {"encoding": "disk", "radius": 2},
                                 {"encoding": "gaussian", "sigma": 1.5, "gaussian_norm": "unit"},
                                 {"encoding": "stroke", "sigma": 1.5},
                                 {"encoding": "edt", "radius": 6, "radius_unit": "mm", "spacing": (2.0, 1.5, 3.0)},
                                 {"encoding": "gaussian", "sigma": 1.2, "channels": "signed"}])
@pytest.mark.parametrize("offset", [0.0, 0.25])
def test_many_clicks_encode_as_their_definition(cfg, offset):
    """Voxel clicks (the template path) and sub-voxel clicks, with repeats and clicks at the border,
    against a brute-force evaluation of the kernel at every voxel."""
    rng = np.random.default_rng(1)
    shape = (9, 11, 7)
    pts = {k: rng.integers(0, shape, (n, 3)).astype(float) + offset for k, n in (("tumor", 30), ("background", 12))}
    pts["tumor"] = np.concatenate([pts["tumor"], pts["tumor"][:5], [[0, 0, 0], [8, 10, 6]]])   # repeats, corners
    enc = EncodeClicks(**cfg)
    got = enc.click_channels(torch.zeros(2, *shape), pts).numpy()
    scale = np.asarray(enc._unit_scale(None))
    support = enc._support()
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)

    def channel(p):
        d2 = ((((grid[..., None, :] - p[None, None, None]) * scale) ** 2).sum(-1))          # (X, Y, Z, N)
        vals = enc.kernel.values(torch.as_tensor(d2), enc).numpy() * (d2 <= support ** 2 + 1e-6)
        if enc.kernel.unit_sum(enc):
            window = np.stack(np.meshgrid(*[np.arange(-h, h + 1) for h in
                                            [int(math.ceil(support / s)) for s in scale]], indexing="ij"), -1)
            d2w = (((window * scale) ** 2).sum(-1)).ravel()
            total = float((enc.kernel.values(torch.as_tensor(d2w), enc).numpy() * (d2w <= support ** 2 + 1e-6)).sum())
            vals = vals / total
        return vals.sum(-1) if enc.combine == "sum" else vals.max(-1)

    fg, bg = channel(pts["tumor"]), channel(pts["background"])
    want = np.stack([fg, bg]) if enc.channels == "two" else (fg - bg)[None]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
