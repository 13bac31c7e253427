"""Clicks outside the volume: the same outcome in every command and in the session (an error naming
the file and the click by default, a warning listing each with --drop-outside), and training
validation's incremental steps (the policy itself: tests/test_clickpolicy.py)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from petclick.cli import main
from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks, write_clicks
from petclick.io.images import save_volume

SHAPE = (16, 16, 12)
AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
OUTSIDE = Clicks([(3, 3, 3), (16, 3, 3)], [(3, 12, 9), (-1, 0, 0)])   # tumor[1] and background[1] outside
MESSAGE = r"click tumor\[1\] \[16, 3, 3\] lies outside the volume of shape \(16, 16, 12\)"


@pytest.fixture
def files(tmp_path):
    pet = np.ones(SHAPE, np.float32)
    pet[2:5, 2:5, 2:5] = 6.0
    label = (pet > 2).astype(np.uint8)
    ct = save_volume(tmp_path / "fdg_p1_2020_0000.nii.gz", np.zeros(SHAPE, np.float32), AFFINE)
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
    """predict, gc (strict when asked: the container is lenient by design), interactive, bundle
    inference, validation and the session: one outcome each way."""
    from petclick.inference.bundle import run_bundle_inference
    from petclick.inference.session import InteractiveSession
    from petclick.training.validation import validate
    from petclick.runtime.preprocess import prepare_arrays
    from petclick.runtime.checkpoint import build_model, read_checkpoint

    commands = {
        "predict": ["predict", "--models", "suv-threshold", "--ct", str(files["ct"]), "--pet", str(files["pet"]),
                    "--clicks", str(files["clicks"]), "--no-progress", "--out", str(tmp_path / "p")],
        "gc": ["gc", "--input", str(_gc_input(files)), "--output", str(tmp_path / "g"), "--models", "suv-threshold",
               "--click-policy", "strict"],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert f"petclick {name}: error:" in err and "[1] [16, 3, 3] lies outside" in err, name
        caplog.clear()
        drop = [a for a in argv if a not in ("--click-policy", "strict")] + ["--drop-outside"]
        with caplog.at_level(logging.WARNING):
            assert main(drop) == 0, name
        assert "2 click(s) outside" in caplog.text and "[1] [16, 3, 3]" in caplog.text, name
    # gc's own default: lenient, the same warning, exit 0
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(commands["gc"][:-2]) == 0
    assert "[1] [16, 3, 3]" in caplog.text
    # interactive: a cohort skips a refused case with the same message (file and click) in its report,
    # and exits 2 when no case is left
    out = tmp_path / "i"
    argv = ["interactive", "--predictor", "suv-threshold", "--datalist", str(_datalist(files)), "--out", str(out),
            "--no-mip"]
    assert main(argv) == 2
    skipped = json.loads((out / "summary.json").read_text())["skipped"]
    assert len(skipped) == 1 and "clicks.json: click tumor[1] [16, 3, 3] lies outside" in skipped[0]["reason"]
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
    prepared = prepare_arrays({"crop_body": False}, np.zeros(SHAPE, np.float32), np.ones(SHAPE, np.float32), AFFINE)
    item = {"image": prepared.image, "pet_affine": AFFINE, "pet_shape": SHAPE, "label_file": str(files["label"]),
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
