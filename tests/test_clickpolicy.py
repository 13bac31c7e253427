"""The click policy (strict | drop-outside | lenient): outside clicks, conflicts, the budget, repeats."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from petclick.core.errors import InputError
from petclick.cli import main
from petclick.io.clickfile import write_clicks
from petclick.io.clickpolicy import BUDGET, ClickPolicy, apply_click_policy, policy_from_flags
from petclick.io.images import save_volume
from petclick.io.clickset import Clicks

SHAPE = (8, 9, 10)
SOURCE = "case_clicks.json"


def test_policy_names_and_flags():
    assert ClickPolicy.parse(None) is ClickPolicy.STRICT
    assert ClickPolicy.parse("drop-outside") is ClickPolicy.DROP_OUTSIDE
    assert ClickPolicy.parse(ClickPolicy.LENIENT) is ClickPolicy.LENIENT
    assert ClickPolicy.from_flags(drop_outside=True) is ClickPolicy.DROP_OUTSIDE
    assert ClickPolicy.from_flags() is ClickPolicy.STRICT
    with pytest.raises(InputError, match="unknown click policy 'loose'"):
        ClickPolicy.parse("loose")


def test_valid_clicks_pass_unchanged_under_every_policy():
    clicks = Clicks([(0, 0, 0), (7, 8, 9)], [(3, 3, 3)])
    for policy in ClickPolicy:
        drops = []
        out = apply_click_policy(clicks, SHAPE, SOURCE, policy, drops=drops)
        assert out == clicks and drops == []


@pytest.mark.parametrize("point", [(8, 0, 0), (0, 9, 0), (0, 0, 10), (-1, 0, 0), (0, 0, -5)])
def test_strict_names_file_and_click_outside(point):
    clicks = Clicks([(1, 1, 1), point], [])
    with pytest.raises(InputError) as err:
        apply_click_policy(clicks, SHAPE, SOURCE, "strict")
    msg = str(err.value)
    assert msg == f"{SOURCE}: click tumor[1] {list(point)} lies outside the volume of shape {SHAPE}"


@pytest.mark.parametrize("policy", [ClickPolicy.DROP_OUTSIDE, ClickPolicy.LENIENT])
def test_outside_clicks_dropped_with_a_warning_listing_each(policy, caplog):
    clicks = Clicks([(1, 1, 1), (8, 0, 0), (2, 2, 2)], [(0, 0, 10), (4, 4, 4)])
    drops = []
    with caplog.at_level(logging.WARNING):
        out = apply_click_policy(clicks, SHAPE, SOURCE, policy, drops=drops)
    assert out.tumor == [(1, 1, 1), (2, 2, 2)] and out.background == [(4, 4, 4)]
    assert [(d.entry, d.click) for d in drops] == [("tumor[1]", [8, 0, 0]), ("background[0]", [0, 0, 10])]
    assert (f"{SOURCE}: 2 click(s) outside the volume of shape {SHAPE} dropped: tumor[1] [8, 0, 0]; "
            "background[0] [0, 0, 10]") in caplog.text      # one warning listing each
    assert out.label("tumor", 1) == "tumor[2]"          # kept clicks still name their file entry


def test_without_shape_only_negative_indices_are_outside():
    assert apply_click_policy(Clicks([(500, 0, 0)], []), None, SOURCE).tumor == [(500, 0, 0)]
    with pytest.raises(InputError, match="negative index"):
        apply_click_policy(Clicks([(5, -1, 0)], []), None, SOURCE)


def test_budget_strict_and_drop_outside_refuse_lenient_keeps_first_ten(caplog):
    tumour = [(i % 8, 0, 0) for i in range(BUDGET + 3)]
    clicks = Clicks(tumour, [(0, 5, 5)])
    for policy in ("strict", "drop-outside"):
        with pytest.raises(InputError, match=r"13 tumor clicks exceed the budget of 10 \(first one over it: tumor\[10\]"):
            apply_click_policy(clicks, SHAPE, SOURCE, policy)
    drops = []
    with caplog.at_level(logging.WARNING):
        out = apply_click_policy(clicks, SHAPE, SOURCE, "lenient", drops=drops)
    assert out.tumor == tumour[:BUDGET] and out.background == [(0, 5, 5)]
    assert len(drops) == 1 and "the first 10 are kept" in drops[0].reason and "exceed the budget" in caplog.text


def test_budget_counts_only_clicks_inside_the_volume():
    """Drop-outside first drops outside clicks, then checks the budget on what is left."""
    clicks = Clicks([(1, 1, 1)] * 10 + [(99, 0, 0)], [])
    assert len(apply_click_policy(clicks, SHAPE, SOURCE, "drop-outside").tumor) == 10


def test_budget_none_means_no_limit():
    clicks = Clicks([(1, 1, 1)] * 50, [])
    assert len(apply_click_policy(clicks, SHAPE, SOURCE, "strict", budget=None).tumor) == 50


def test_repeated_clicks_of_one_kind_are_kept_as_given():
    """The official simulation repeats boundary clicks on small lesions: repeats are legitimate."""
    clicks = Clicks([(1, 1, 1), (1, 1, 1), (1, 1, 1)], [(2, 2, 2), (2, 2, 2)])
    for policy in ClickPolicy:
        assert apply_click_policy(clicks, SHAPE, SOURCE, policy) == clicks


def test_one_voxel_as_both_kinds():
    clicks = Clicks([(1, 1, 1), (3, 3, 3)], [(5, 5, 5), (3, 3, 3)])
    for policy in ("strict", "drop-outside"):
        with pytest.raises(InputError, match=r"background\[1\] \[3, 3, 3\]: background click on the voxel of tumour click tumor\[1\]"):
            apply_click_policy(clicks, SHAPE, SOURCE, policy)
    drops = []
    out = apply_click_policy(clicks, SHAPE, SOURCE, "lenient", drops=drops)
    assert out.tumor == [(1, 1, 1), (3, 3, 3)] and out.background == [(5, 5, 5)]
    assert drops[0].entry == "background[1]"


def test_many_outside_clicks_are_listed_in_one_warning(caplog):
    clicks = Clicks([(100, 0, 0)] * 40, [])
    drops = []
    with caplog.at_level(logging.WARNING):
        out = apply_click_policy(clicks, SHAPE, SOURCE, "lenient", drops=drops)
    assert len(out) == 0 and len(drops) == 40
    assert caplog.text.count("tumor[") == 40 and len(caplog.records) == 1   # one line lists them all


def test_many_bad_entries_are_counted_not_all_logged(tmp_path, caplog):
    from petclick.io.clickfile import read_clicks

    path = tmp_path / "c.json"
    path.write_text('{"tumor": [' + ", ".join(['["x", 1, 1]'] * 40) + "]}")
    drops = []
    with caplog.at_level(logging.WARNING):
        assert len(read_clicks(path, SHAPE, policy="lenient", drops=drops)) == 0
    assert len(drops) == 40 and caplog.text.count("dropped tumor[") == 25
    assert "15 more click entries dropped (40 in all)" in caplog.text

# ---- the policy in every entry point (from the interactive-session branch) -------------------------
ENTRY_SHAPE = (16, 16, 12)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
OUTSIDE = Clicks([(3, 3, 3), (16, 3, 3)], [(3, 12, 9), (-1, 0, 0)])   # tumor[1] and background[1] outside
MESSAGE = r"click tumor\[1\] \[16, 3, 3\] lies outside the volume of shape \(16, 16, 12\)"


def test_click_policy_flag_and_drop_outside_together():
    assert policy_from_flags(False, "lenient") is ClickPolicy.LENIENT
    assert policy_from_flags(True, "drop-outside") is ClickPolicy.DROP_OUTSIDE
    with pytest.raises(InputError, match="contradicts"):
        policy_from_flags(True, "strict")


@pytest.fixture
def files(tmp_path):
    pet = np.ones(ENTRY_SHAPE, np.float32)
    pet[2:5, 2:5, 2:5] = 6.0
    label = (pet > 2).astype(np.uint8)
    ct = save_volume(tmp_path / "fdg_p1_2020_0000.nii.gz", np.zeros(ENTRY_SHAPE, np.float32), AFFINE)
    pet_f = save_volume(tmp_path / "fdg_p1_2020_0001.nii.gz", pet, AFFINE)
    lab = save_volume(tmp_path / "fdg_p1_2020.nii.gz", label, AFFINE)
    clicks = write_clicks(tmp_path / "clicks.json", OUTSIDE)
    return {"ct": ct, "pet": pet_f, "label": lab, "clicks": clicks, "root": tmp_path}


@pytest.fixture
def tiny_model(tmp_path):
    from petclick.networks.factory import build_network
    from petclick.runtime.checkpoint import save_checkpoint
    kw = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
    torch.manual_seed(0)
    net = build_network("segresnet", 4, 1, **kw)
    return save_checkpoint(tmp_path / "model" / "model.pt", {
        "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": kw}, "in_channels": 4,
        "out_channels": 1, "preprocess": {"roi": [16, 16, 16], "crop_body": False},
        "infer": {"roi": [16, 16, 16], "overlap": 0.25}})


def _gc_input(files):
    from petclick.io.sitk import save_mha
    root = files["root"] / "gc_in"
    from petclick.io.images import load_volume
    save_mha(root / "images" / "ct" / "u.mha", load_volume(files["ct"]).array, affine=AFFINE)
    save_mha(root / "images" / "pet" / "u.mha", load_volume(files["pet"]).array, affine=AFFINE)
    (root / "lesion-clicks.json").write_text(json.dumps(OUTSIDE.to_gc()))
    return root


def _datalist(files):
    path = files["root"] / "datalist.json"
    path.write_text(json.dumps({"testing": [{"image": files["ct"].name, "pet": files["pet"].name,
                                             "label": files["label"].name, "clicks": files["clicks"].name}]}))
    return path


def test_every_command_refuses_clicks_outside_by_default_and_drops_them_with_the_flag(files, tiny_model, tmp_path,
                                                                                       capsys, caplog):
    """predict, interactive, bundle inference, validation and the session: one outcome each way (gc: lenient)."""
    from petclick.inference.bundle import run_bundle_inference
    from petclick.inference.session import InteractiveSession
    from petclick.training.validation import validate
    from petclick.runtime.preprocess import prepare_arrays
    from petclick.runtime.checkpoint import build_model, read_checkpoint

    argv = ["predict", "--models", "suv-threshold", "--ct", str(files["ct"]), "--pet", str(files["pet"]),
            "--clicks", str(files["clicks"]), "--no-progress", "--out", str(tmp_path / "p")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "petclick predict: error:" in err and "tumor[1] [16, 3, 3] lies outside" in err
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(argv + ["--drop-outside"]) == 0
    assert "2 click(s) outside" in caplog.text and "tumor[1] [16, 3, 3]" in caplog.text
    # gc: the lenient policy (a challenge job never fails over its clicks); the drops are in its report
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["gc", "--input", str(_gc_input(files)), "--output", str(tmp_path / "g"),
                     "--models", "suv-threshold"]) == 0
    report = json.loads((tmp_path / "g" / "petclick-input-report.json").read_text())["jobs"][0]
    assert report["n_tumor_clicks"] == 1 and report["n_background_clicks"] == 1
    assert sorted(d["entry"] for d in report["dropped"]) == ["points[1]", "points[3]"]
    # interactive: a cohort skips a refused case with the same message (file and click) in its report
    out = tmp_path / "i"
    argv = ["interactive", "--predictor", "suv-threshold", "--datalist", str(_datalist(files)), "--out", str(out),
            "--no-mip"]
    assert main(argv) == 2                       # no case left to evaluate: exit 2, naming the skipped case
    assert "clicks.json: click tumor[1] [16, 3, 3] lies outside" in capsys.readouterr().err
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(argv + ["--drop-outside"]) == 0
    assert "tumor[1] [16, 3, 3]" in caplog.text and json.loads((out / "summary.json").read_text())["n_evaluated"] == 1
    # bundle inference (monai.bundle run inference's target)
    bundle_args = dict(bundle_root=None, ct=str(files["ct"]), pet=str(files["pet"]), clicks=str(files["clicks"]),
                       checkpoints=str(tiny_model), output_dir=str(tmp_path / "b"), device="cpu")
    with pytest.raises(InputError, match=MESSAGE):
        run_bundle_inference(**bundle_args)
    assert run_bundle_inference(**bundle_args, drop_outside=True).is_file()
    # training validation
    prepared = prepare_arrays({"crop_body": False}, np.zeros(ENTRY_SHAPE, np.float32), np.ones(ENTRY_SHAPE, np.float32), AFFINE)
    item = {"image": prepared.image, "pet_affine": AFFINE, "pet_shape": ENTRY_SHAPE, "label_file": str(files["label"]),
            "clicks_file": str(files["clicks"]), "case": "fdg_p1_2020"}
    ckpt = read_checkpoint(tiny_model)
    infer = {"roi": [16, 16, 16], "overlap": 0.25, "sw_batch_size": 1, "mode": "gaussian"}
    with pytest.raises(InputError, match=MESSAGE):
        validate(build_model(ckpt), [item], infer, None, steps=(0, 2))
    # the session
    session = InteractiveSession.open("suv-threshold", files["ct"], files["pet"])
    with pytest.raises(InputError, match=r"click tumor\[0\] \[16, 3, 3\] lies outside"):
        session.add_clicks(tumor=[(16, 3, 3)])
    lenient = InteractiveSession.open("suv-threshold", files["ct"], files["pet"], click_policy="drop-outside")
    assert lenient.add_clicks(tumor=[(16, 3, 3), (3, 3, 3)]).tumor == [(3, 3, 3)]


def test_validation_runs_its_steps_incrementally_with_the_full_pass_result(files, tiny_model):
    """Validation's later steps re-run only the tiles new clicks reach; its metrics equal full passes."""
    from petclick.runtime.checkpoint import build_model, read_checkpoint
    from petclick.runtime.clickinput import ClickEncoder
    from petclick.runtime.preprocess import prepare_arrays
    from petclick.runtime.tiles import TileCache, TiledLogits, TileGrid, update_logits
    from petclick.runtime.window import make_inferer, sliding_window_logits

    model = build_model(read_checkpoint(tiny_model))
    rng = np.random.default_rng(0)
    shape = (40, 30, 36)
    prepared = prepare_arrays({"crop_body": False}, rng.normal(0, 100, shape).astype(np.float32),
                              rng.random(shape).astype(np.float32) * 5, AFFINE)
    clicks = Clicks([(3, 3, 3), (35, 25, 30)], [(36, 4, 4), (4, 26, 32)])
    enc = ClickEncoder(None)
    tiled = TiledLogits("v", model, TileGrid(shape, (16, 16, 16), 0.25), cache=TileCache(None))
    inferer = make_inferer((16, 16, 16), 0.25, 1, "gaussian", "cpu")
    logits, prev = None, None
    for k in (0, 1, 2):
        cur = clicks.first(k)
        before = tiled.counters.computed
        logits = update_logits(tiled, logits, enc(prepared, cur), None if prev is None else enc.changed_boxes(prepared, prev, cur))
        ref = sliding_window_logits(model, enc(prepared, cur)[None], inferer, False)[0, 0]
        assert float((logits - ref).abs().max()) <= 1e-5
        if k:
            assert tiled.counters.computed - before < len(tiled.grid)
        prev = cur
