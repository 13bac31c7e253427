"""The interactive engine: the tiler against MONAI, exact/local/naive sessions, undo, save/reload, cache limit."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from petclick.core.errors import InputError
from petclick.inference.checkpoint_set import MODELS
from petclick.inference.predictor import EnsemblePredictor
from petclick.inference.session import InteractiveSession
from petclick.io.clickfile import Clicks, write_clicks
from petclick.io.images import CaseVolumes, Volume, save_volume
from petclick.networks.factory import build_network
from petclick.networks.roi import cover_roi
from petclick.phantoms import generate_case
from petclick.runtime.checkpoint import save_checkpoint
from petclick.runtime.clickinput import ClickEncoder
from petclick.runtime.grid import to_pet_grid
from petclick.runtime.preprocess import prepare_arrays
from petclick.runtime.tiles import TileCache, TiledLogits, TileGrid
from petclick.runtime.window import make_inferer, sliding_window_logits

KWARGS = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
ROI = [16, 16, 16]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two untrained tiny checkpoints (16^3 windows, overlap 0.25), one cropping the body and one
    not: two input groups, one of them with many windows."""
    root = tmp_path_factory.mktemp("session_models")
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_network("segresnet", 4, 1, **KWARGS)
        save_checkpoint(root / f"r{seed}" / "model.pt", {
            "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": KWARGS},
            "in_channels": 4, "out_channels": 1,
            "preprocess": {"roi": ROI, "crop_body": seed == 0, "encoding": {"encoding": "edt", "channels": "two"}},
            "infer": {"roi": ROI, "overlap": 0.25, "sw_batch_size": 2}})
    return root


@pytest.fixture(scope="module")
def phantom():
    return generate_case("fdg_sess_01", 3, shape=(32, 28, 40), tracer="fdg")


def _case(ph) -> CaseVolumes:
    return CaseVolumes(Volume(ph.ct, ph.affine), Volume(ph.pet, ph.affine))


def monai_reference(predictor: EnsemblePredictor, case: CaseVolumes, clicks: Clicks) -> np.ndarray:
    """The ensemble's probability by MONAI's own sliding window, one full pass per checkpoint."""
    total = None
    for path in predictor.checkpoints:
        info = predictor.info[path]
        prepared = prepare_arrays(info["preprocess"], case.ct.array, case.pet.array, case.affine)
        x = ClickEncoder(info["encoding"])(prepared, clicks)[None].float()
        roi = cover_roi(info["infer"]["roi"], x.shape[2:], "segresnet", **KWARGS)
        inferer = make_inferer(roi, info["infer"]["overlap"], 1, "gaussian", "cpu")
        prob = torch.sigmoid(sliding_window_logits(MODELS.get(path, torch.device("cpu")), x, inferer, False)[0, :1])
        pet = to_pet_grid(prob, prepared.affine, prepared.pet_affine, prepared.pet_shape)[0].numpy()
        total = pet if total is None else total + pet
    return total / len(predictor.checkpoints)


@pytest.mark.parametrize("shape,roi,overlap,flips", [((30, 22, 36), (16, 16, 16), 0.25, ()),
                                                      ((26, 30, 20), (16, 32, 16), 0.625, (0, 2)),
                                                      ((12, 30, 20), (16, 16, 16), 0.5, (1,))])
def test_tiler_equals_monai_and_recomputes_only_changed_tiles(shape, roi, overlap, flips):
    torch.manual_seed(0)
    net = build_network("segresnet", 4, 1, **KWARGS).eval()
    x = torch.randn(4, *shape)
    inferer = make_inferer(roi, overlap, 1, "gaussian", "cpu")
    grid = TileGrid(shape, roi, overlap)
    tiled = TiledLogits("n", net, grid, flip_axes=flips, sw_batch_size=3, cache=TileCache(None))
    tiled.set_input(x)
    tiled.invalidate(None)
    full = tiled.logits(((0, 0, 0), shape))
    ref = sliding_window_logits(net, x[None], inferer, False, flip_axes=flips)[0, 0]
    assert len(grid) > 4 and float((full - ref).abs().max()) <= 1e-5
    x2 = x.clone()
    x2[2, 5:9, 3:8, 10:14] += 1.0                     # a click's support
    tiled.set_input(x2)
    regions = tiled.invalidate([((5, 3, 10), (9, 8, 14))])
    before = tiled.counters.computed
    for region in regions:
        full[tuple(slice(a, b) for a, b in zip(*region))] = tiled.logits(region)
    touched = len(grid.touching([grid.flip_box(((5, 3, 10), (9, 8, 14)), flips)]))
    assert tiled.counters.computed - before == touched < len(grid)
    ref2 = sliding_window_logits(net, x2[None], inferer, False, flip_axes=flips)[0, 0]
    assert float((full - ref2).abs().max()) <= 1e-5


def test_support_boxes_hold_every_changed_voxel(phantom):
    """The encoding support of a click bounds exactly where the input changes (edt, gaussian, disk, uptake)."""
    from petclick.runtime.preprocess import prepare_arrays
    prepared = prepare_arrays({"crop_body": True}, phantom.ct, phantom.pet, phantom.affine)
    for enc in ({"encoding": "edt", "radius": 3}, {"encoding": "gaussian", "sigma": 1.5, "truncate": 2.0},
                {"encoding": "disk", "radius": 2, "radius_unit": "mm"}, {"encoding": "edt", "channels": "signed"},
                {"encoding": "uptake", "radius": 2, "uptake_radius": 5}):
        e = ClickEncoder(enc)
        a = Clicks([phantom.clicks.tumor[0]], [])
        b = Clicks([phantom.clicks.tumor[0], phantom.clicks.tumor[1]], [phantom.clicks.background[0]])
        diff = (e(prepared, a) != e(prepared, b)).any(0)
        inside = torch.zeros_like(diff)
        boxes = e.changed_boxes(prepared, a, b)
        for lo, hi in boxes:
            inside[tuple(slice(p, q) for p, q in zip(lo, hi))] = True
        assert diff.any() and not (diff & ~inside).any() and len(boxes) == 2


# clicks near the corners of the 32x28x40 phantom: each reaches a few of the 16^3 windows
SPREAD = Clicks([(3, 3, 3), (28, 24, 36)], [(28, 3, 36), (3, 24, 3)])


def test_exact_equals_full_recomputation_and_computes_fewer_tiles(models, phantom):
    predictor = EnsemblePredictor(sorted(models.rglob("model.pt")))
    case = _case(phantom)
    exact = InteractiveSession(predictor, case, mode="exact")
    naive = InteractiveSession(predictor, case, mode="naive")
    assert len(exact.engine.groups) == 2 and max(len(m.tiled.grid) for g in exact.engine.groups
                                                 for m in g.members) >= 12   # several windows
    for k in range(3):
        exact.set_clicks(SPREAD.first(k))
        naive.set_clicks(SPREAD.first(k))
        pe, pn = exact.predict(), naive.predict()
        assert float(np.abs(pe.prob - pn.prob).max()) <= 1e-6
        assert pn.tiles_computed == naive.engine.tiles_per_pass
        if k:
            assert 0 < pe.tiles_computed < pn.tiles_computed and pe.tiles_reused > 0
    ref = monai_reference(predictor, case, SPREAD)
    assert float(np.abs(pe.prob - ref).max()) <= 1e-6              # MONAI's own sliding window


def test_unchanged_clicks_compute_nothing(models, phantom):
    calls = []

    class Counting:
        name = "counting"

        def predict(self, case, clicks):
            calls.append(clicks)
            return (case.pet.array > 2.5).astype(np.float32)

    for predictor in (EnsemblePredictor(sorted(models.rglob("model.pt"))), Counting()):
        s = InteractiveSession(predictor, _case(phantom))
        s.add_clicks(tumor=[phantom.clicks.tumor[0]])
        first = s.predict()
        again = s.predict()
        s.set_clicks(s.clicks)                    # the same clicks once more: no new step
        third = s.predict()
        assert first.computed and not again.computed and not third.computed
        assert again.tiles_computed == third.tiles_computed == 0 and again.changed is None
        assert again.mask is first.mask and s.step == 1
    assert len(calls) == 1


@pytest.mark.parametrize("mode", ["exact", "local", "naive", "frozen"])
def test_undo_restores_the_earlier_mask_exactly(models, phantom, mode):
    s = InteractiveSession(EnsemblePredictor(sorted(models.rglob("model.pt"))), _case(phantom), mode=mode)
    start = s.predict()                                     # step 0: what a viewer shows first
    earlier = []
    for k in range(3):
        s.add_clicks(tumor=[phantom.clicks.tumor[k]], background=[phantom.clicks.background[k]])
        earlier.append(s.predict())
    assert s.undo() and s.step == 2
    back = s.predict()
    np.testing.assert_array_equal(back.mask, earlier[1].mask)
    np.testing.assert_array_equal(back.prob, earlier[1].prob)
    if mode != "naive":
        assert back.tiles_computed == 0                     # restored from the journal, no network pass
    s.add_clicks(tumor=[phantom.clicks.tumor[5]])           # a new branch after the undo
    s.predict()
    s.undo()
    np.testing.assert_array_equal(s.predict().mask, earlier[1].mask)
    s.reset()
    assert s.step == 0 and not s.undo() and s.clicks == Clicks()
    step0 = s.predict()
    np.testing.assert_array_equal(step0.mask, start.mask)
    np.testing.assert_array_equal(step0.prob, start.prob)


@pytest.mark.parametrize("mode", ["exact", "local", "frozen"])
def test_save_and_reload_give_the_same_next_prediction(models, phantom, tmp_path, mode):
    ct = save_volume(tmp_path / "x_0000.nii.gz", phantom.ct, phantom.affine)
    pet = save_volume(tmp_path / "x_0001.nii.gz", phantom.pet, phantom.affine)
    s = InteractiveSession.open(models, ct, pet, mode=mode)
    for k in range(2):
        s.add_clicks(tumor=[SPREAD.tumor[k]], background=[SPREAD.background[k]])
        s.predict()
    s.save(tmp_path / "state")
    MODELS.clear()
    loaded = InteractiveSession.load(tmp_path / "state")
    assert loaded.clicks == s.clicks and loaded.step == s.step and loaded.mode == mode
    same = loaded.predict()
    assert not same.computed and same.tiles_computed == 0
    for session in (s, loaded):
        session.add_clicks(tumor=[(3, 24, 36)])
    a, b = s.predict(), loaded.predict()
    np.testing.assert_allclose(a.prob, b.prob, rtol=0, atol=1e-6)   # batches of other windows: last bits only
    np.testing.assert_array_equal(a.mask, b.mask)
    if mode == "exact":
        assert b.tiles_computed < loaded.engine.tiles_per_pass     # only the region the click reaches
    assert loaded.undo() and s.undo()
    np.testing.assert_array_equal(s.predict().mask, loaded.predict().mask)


def test_a_fresh_process_per_step_continues_the_session(models, phantom, tmp_path):
    """The container use: each step is a new python process that loads the state, clicks, predicts, saves."""
    ct = save_volume(tmp_path / "x_0000.nii.gz", phantom.ct, phantom.affine)
    pet = save_volume(tmp_path / "x_0001.nii.gz", phantom.pet, phantom.affine)
    InteractiveSession.open(models, ct, pet).save(tmp_path / "state")
    script = ("import sys, json, numpy as np; from petclick.inference.session import InteractiveSession as S; "
              "s = S.load(sys.argv[1]); s.add_clicks(tumor=[json.loads(sys.argv[2])]); p = s.predict(); "
              "s.save(sys.argv[1]); print(json.dumps(s.counters))")
    counters = []
    for k in range(2):
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "state"), json.dumps(list(phantom.clicks.tumor[k]))],
                             capture_output=True, text=True, check=True)
        counters.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert [c["step"] for c in counters] == [1, 2]
    direct = InteractiveSession.open(models, ct, pet)
    direct.add_clicks(tumor=[phantom.clicks.tumor[0]])
    direct.add_clicks(tumor=[phantom.clicks.tumor[1]])
    loaded = InteractiveSession.load(tmp_path / "state")
    np.testing.assert_array_equal(loaded.predict().prob, direct.predict().prob)


def test_tile_cache_limit_is_honoured(models, phantom, caplog):
    predictor = EnsemblePredictor(sorted(models.rglob("model.pt")))
    tile_mb = 16 ** 3 * 4 / 2**20
    small = InteractiveSession(predictor, _case(phantom), mode="exact", tile_cache_mb=5 * tile_mb)
    naive = InteractiveSession(predictor, _case(phantom), mode="naive")
    with caplog.at_level(logging.WARNING):
        for k in range(3):
            for s in (small, naive):
                s.set_clicks(phantom.clicks.first(k))
            a, b = small.predict(), naive.predict()
            assert float(np.abs(a.prob - b.prob).max()) <= 1e-6
    cache = small.engine.cache
    assert cache.bytes <= cache.peak_bytes <= cache.limit and cache.refused > 0
    assert "tile cache at its limit" in caplog.text
    assert small.counters["cache_limit_bytes"] == cache.limit and small.counters["cache_refused"] == cache.refused


def test_local_mode_updates_a_window_around_the_new_click(models, phantom):
    """Per input group (the body-cropped checkpoint, the whole-image one): the two groups place their
    windows around the click on grids of their own, so only each group's change is one window."""
    from petclick.inference.engine import LocalSettings
    click = phantom.clicks.tumor[0]
    for path in sorted(models.rglob("model.pt")):
        s = InteractiveSession(EnsemblePredictor([path]), _case(phantom), mode="local",
                               local=LocalSettings(max_grow=0))
        before = s.predict()
        s.add_clicks(tumor=[click])
        after = s.predict()
        assert after.tiles_computed == 1                     # one window for the checkpoint
        changed = np.abs(after.prob - before.prob) > 0
        assert changed[click]                                # the clicked voxel's probability moved
        box = np.argwhere(changed)
        extent = box.max(0) - box.min(0) + 1
        assert np.all(extent <= np.asarray(ROI) + 1), (path.parent.name, extent)   # one window around the click


def test_local_mode_window_fraction_runs_a_smaller_crop_per_click(models, phantom):
    """infer.local_window 0.5: each click costs one half-ROI crop per checkpoint (1/8 of a tile's voxels)."""
    from petclick.inference.engine import LocalSettings
    predictor = EnsemblePredictor(sorted(models.rglob("model.pt")))
    s = InteractiveSession(predictor, _case(phantom), mode="local", local=LocalSettings(window=0.5, max_grow=0))
    before = s.predict()
    v0 = s.counters["voxels_computed"]
    click = phantom.clicks.tumor[0]
    s.add_clicks(tumor=[click])
    after = s.predict()
    crops = [np.prod(np.minimum(s.engine._local_roi(g), g.shape)) for g in s.engine.groups]   # half-ROI crops
    assert after.tiles_computed == 2 and s.counters["voxels_computed"] - v0 == sum(crops) < 2 * 16 ** 3 / 4
    assert [tuple(s.engine._local_roi(g)) for g in s.engine.groups] == [(8, 4, 8), (8, 8, 8)]  # ROIs 16x10x16, 16^3
    changed = np.argwhere(np.abs(after.prob - before.prob) > 0)
    assert np.abs(after.prob - before.prob)[click] > 0
    assert np.all(changed.max(0) - changed.min(0) + 1 <= 8 + 1)
    with pytest.raises(InputError, match="local_window"):
        LocalSettings(window=0)


def test_local_mode_overlapping_windows_cost_one_pass_each(models, phantom):
    """Two clicks whose windows overlap: one pass per window and checkpoint (their windows blend
    as one region), not a sliding window over their bounding box."""
    from petclick.inference.engine import LocalSettings, overlap_groups
    predictor = EnsemblePredictor(sorted(models.rglob("model.pt")))
    s = InteractiveSession(predictor, _case(phantom), mode="local", local=LocalSettings(window=0.5, max_grow=0))
    before = s.predict()
    click = tuple(int(v) for v in phantom.clicks.tumor[0])
    near = tuple(min(c + d, n - 1) for c, d, n in zip(click, (3, 0, 3), phantom.pet.shape))
    s.add_clicks(tumor=[click], background=[near])
    after = s.predict()
    assert after.tiles_computed == 2 * 2
    assert np.abs(after.prob - before.prob)[click] > 0 and np.abs(after.prob - before.prob)[near] > 0
    a, b, c = ((0, 0, 0), (4, 4, 4)), ((3, 3, 3), (6, 6, 6)), ((5, 5, 5), (8, 8, 8))
    far = ((10, 0, 0), (12, 2, 2))
    assert overlap_groups([a, far, c, b]) == [[a, c, b], [far]]        # b joins a and c
    assert overlap_groups([a, far]) == [[a], [far]]


def _click_blind_models(root, update: str | None = None):
    """Two tiny checkpoints whose first convolution ignores the click channels (their output cannot
    depend on clicks), `infer.local_update` set to `update`."""
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_network("segresnet", 4, 1, **KWARGS)
        with torch.no_grad():
            net.encoder.conv_init.weight[:, 2:] = 0
        infer = {"roi": ROI, "overlap": 0.25, "sw_batch_size": 2, **({} if update is None else {"local_update": update})}
        paths.append(save_checkpoint(root / f"blind{seed}" / "model.pt", {
            "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": KWARGS},
            "in_channels": 4, "out_channels": 1,
            "preprocess": {"roi": ROI, "crop_body": seed == 0, "encoding": {"encoding": "edt", "channels": "two"}},
            "infer": infer}))
    return paths


def test_local_delta_update_blends_in_only_what_the_clicks_change(tmp_path, models, phantom):
    """infer.local_update delta: a click the networks cannot see changes nothing (replace blends in
    the crop's own probabilities, which differ from the tiled ones), a click they see moves its
    voxel; each window costs two crops per checkpoint (new clicks and previous clicks)."""
    from petclick.inference.engine import LocalSettings
    from petclick.inference.session import default_local_settings
    click = phantom.clicks.tumor[0]
    blind = EnsemblePredictor(_click_blind_models(tmp_path, update="delta"))
    assert default_local_settings(blind) == LocalSettings(update="delta")
    moved = {}
    for update in ("replace", "delta"):
        s = InteractiveSession(blind, _case(phantom), mode="local", local=LocalSettings(window=0.5, update=update,
                                                                                        max_grow=0))
        before = s.predict()
        s.add_clicks(tumor=[click])
        after = s.predict()
        assert after.tiles_computed == (4 if update == "delta" else 2)
        moved[update] = float(np.abs(after.prob - before.prob).max())
    assert moved["delta"] == 0.0 and moved["replace"] > 1e-4
    s = InteractiveSession(EnsemblePredictor(sorted(models.rglob("model.pt"))), _case(phantom), mode="local",
                           local=LocalSettings(window=0.5, update="delta", max_grow=0))
    before = s.predict()
    s.add_clicks(tumor=[click])
    after = s.predict()
    assert np.abs(after.prob - before.prob)[click] > 0 and after.prob.min() >= 0 and after.prob.max() <= 1
    s.undo()
    assert np.array_equal(s.predict().prob, before.prob)
    with pytest.raises(InputError, match="infer.local_update"):
        LocalSettings(update="average")
    for bad in (1.5, -1, "two", True):
        with pytest.raises(InputError, match="infer.local_max_grow"):
            LocalSettings(max_grow=bad)


def test_local_mode_widens_towards_changes_at_its_border():
    from petclick.inference.engine import EnsembleEngine
    flips = torch.zeros((16, 16, 16), dtype=torch.bool)
    flips[15, 6:9, 4:6] = True                           # the mask changed at the +x side of the window
    region = ((10, 0, 20), (26, 16, 36))
    shape, roi, margin = np.array([64, 40, 60]), np.array([16, 16, 16]), np.array([4, 4, 4])
    (window,) = EnsembleEngine._widen(region, flips, shape, roi, margin)
    assert window == ((18, 0, 16), (34, 16, 32))           # centred on the changes, half a window past x = 26
    assert EnsembleEngine._widen(((48, 0, 20), (64, 16, 36)), flips, shape, roi, margin) == []  # image border


@pytest.mark.parametrize("mode", [None, "local", "frozen"])
def test_session_clicks_policy_and_arrays(models, phantom, caplog, tmp_path, mode):
    s = InteractiveSession.open(str(models), phantom.ct, phantom.pet, affine=phantom.affine, mode=mode)
    with pytest.raises(InputError, match=r"click tumor\[0\] \[99, 0, 0\] lies outside the volume"):
        s.add_clicks(tumor=[(99, 0, 0)])
    assert s.step == 0
    with pytest.raises(InputError, match="exceed the budget of 10"):
        s.add_clicks(background=[(1, 1, 1)] * 11)
    lenient = InteractiveSession.open(str(models), phantom.ct, phantom.pet, affine=phantom.affine,
                                      click_policy="drop-outside", mode=mode)
    with caplog.at_level(logging.WARNING):
        assert lenient.add_clicks(tumor=[(99, 0, 0), (1, 2, 3)]).tumor == [(1, 2, 3)]
    assert "tumor[0] [99, 0, 0]" in caplog.text
    lenient.predict()
    lenient.save(tmp_path / "arrays")
    with pytest.raises(InputError, match="built from arrays"):
        InteractiveSession.load(tmp_path / "arrays")
    other = CaseVolumes(Volume(phantom.ct, phantom.affine), Volume(phantom.pet * 2, phantom.affine))
    with pytest.raises(InputError, match="differs from the one this session was saved with"):
        InteractiveSession.load(tmp_path / "arrays", case=other)
    back = InteractiveSession.load(tmp_path / "arrays", case=_case(phantom))
    assert back.clicks.tumor == [(1, 2, 3)] and not back.predict().computed


def test_first_fast_answers_step0_from_a_subset_then_refines(models, phantom):
    """`first: fast`: step 0 from the first K checkpoints at once, the full ensemble's step 0 in the
    background (refine), and a click builds on the full ensemble's step 0 as without it."""
    from petclick.inference.session import EXACT_BOUND

    predictor = EnsemblePredictor(sorted(models.rglob("model.pt")))
    case = _case(phantom)
    s = InteractiveSession(predictor, case, mode="exact", first="fast", fast_checkpoints=1)
    quick = s.predict()
    assert quick.path == "fast-step0" and quick.bound is None and s.counters["last"]["path"] == "fast-step0"
    np.testing.assert_allclose(quick.prob, predictor.predict_with(predictor.checkpoints[:1], (), case, Clicks()),
                               atol=1e-6)
    full = s.refine()
    assert full.path == "full" and full.bound == EXACT_BOUND and not s.refining
    np.testing.assert_allclose(full.prob, predictor.predict(case, Clicks()), atol=1e-6)
    assert s.refine() is None
    plain = InteractiveSession(predictor, case, mode="exact")
    for session in (s, plain):
        session.add_clicks(tumor=[SPREAD.tumor[0]])
    a, b = s.predict(), plain.predict()
    np.testing.assert_array_equal(a.prob, b.prob)
    assert a.path == "exact" and a.bound == EXACT_BOUND
    again = InteractiveSession(predictor, case, mode="exact", first="fast", fast_checkpoints=1)
    again.predict()
    again.add_clicks(tumor=[SPREAD.tumor[0]])                  # clicked before refining: waits for it
    np.testing.assert_array_equal(again.predict().prob, b.prob)
    with pytest.raises(InputError, match="step-0 choice"):
        InteractiveSession(predictor, case, first="quick")
