"""`petclick predict`: the time-budget planner, bad-input repairs and the command end to end."""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest

from petclick.cli import main
from petclick.core.errors import InputError
from petclick.inference.predictors import SuvThresholdPredictor
from petclick.io.clickfile import Clicks, read_clicks, write_clicks
from petclick.io.images import Volume, save_volume
from petclick.phantoms import generate_case
from petclick.workflows.predict import PredictSettings, Runner, plan_budget, single_case, tta_passes
from petclick.workflows.predict.inputs import load_prediction_case, resample_to


# ---------------------------------------------------------------- planner (pure)

def test_tta_passes():
    assert [tta_passes(n) for n in range(4)] == [1, 2, 4, 8]
    assert [tta_passes(n, "single") for n in range(4)] == [1, 2, 3, 4]


@pytest.mark.parametrize("sec,budget,n,preds,expect", [
    (1.0, 100.0, 5, 1, (5, (0, 1, 2))),    # 5 x 8 = 40 s: everything fits
    (1.0, 20.0, 5, 1, (5, (0, 1))),        # 5 x 4 = 20 s fits, 5 x 8 does not
    (1.0, 4.5, 5, 1, (4, ())),             # models first: 4 checkpoints, no TTA
    (1.0, 22.0, 5, 11, (2, ())),           # 11 steps: 2 x 11 = 22 s
    (2.0, 30.0, 3, 1, (3, (0, 1))),
])
def test_plan_budget_choices(sec, budget, n, preds, expect):
    plan = plan_budget(sec, budget, n, preds)
    assert (plan.n_models, plan.tta_axes) == expect and plan.fits
    assert plan.estimated_s <= budget


def test_plan_budget_too_small_still_predicts():
    plan = plan_budget(10.0, 5.0, 4)
    assert (plan.n_models, plan.tta_axes, plan.fits) == (1, (), False) and plan.estimated_s == 10.0
    with pytest.raises(ValueError):
        plan_budget(1.0, 5.0, 0)


def test_plan_budget_custom_axes_order():
    assert plan_budget(1.0, 7.0, 2, axes=(2, 0)).tta_axes == (2,)


# ---------------------------------------------------------------- fake slow ensemble

class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class FakeEnsemble:
    """An ensemble whose every forward pass takes `seconds` (on a fake or the real clock)."""

    name = "fake"

    def __init__(self, n=4, seconds=2.0, clock: FakeClock | None = None):
        self.checkpoints = [f"ckpt{i}.pt" for i in range(n)]
        self.seconds, self.clock, self.calls = seconds, clock, []

    def predict_with(self, checkpoints, tta_flip_axes, case, clicks):
        passes = len(checkpoints) * 2 ** len(tta_flip_axes)
        self.calls.append((list(checkpoints), tuple(tta_flip_axes)))
        if self.clock is not None:
            self.clock.t += passes * self.seconds
        else:
            time.sleep(passes * self.seconds)
        return (case.pet.array >= 2.5).astype(np.float32)

    def predict(self, case, clicks):
        return self.predict_with(self.checkpoints, (), case, clicks)


@pytest.fixture(scope="module")
def phantom():
    return generate_case("fdg_pp_01", 3, shape=(32, 28, 40), tracer="fdg", clicks=False)


def write_case(folder, ph, clicks: Clicks | None, name="case"):
    ct = save_volume(folder / f"{name}_0000.nii.gz", ph.ct, ph.affine)
    pet = save_volume(folder / f"{name}_0001.nii.gz", ph.pet, ph.affine)
    cf = write_clicks(folder / f"{name}_clicks.json", clicks) if clicks is not None else None
    return ct, pet, cf


def lesion_clicks(ph, n=3):
    pts = [tuple(int(v) for v in q) for q in np.argwhere(ph.label)]
    return Clicks(pts[:: max(1, len(pts) // n)][:n], [tuple(int(v) for v in np.argwhere(ph.organs == 10)[0])])


def test_time_budget_with_fake_slow_model(tmp_path, phantom):
    ct, pet, cf = write_case(tmp_path, phantom, lesion_clicks(phantom))
    clock = FakeClock()
    model = FakeEnsemble(n=4, seconds=2.0, clock=clock)
    runner = Runner(model, PredictSettings(steps=(0, 1, 2), time_budget_s=50.0, progress=False), clock=clock)
    summary = runner.run([single_case(ct, pet, cf)], tmp_path / "out")
    # 2 s per pass, 3 predictions: 4 models = 24 s fit, 4 x 2 passes x 3 = 48 s fit, 4 x 4 x 3 = 96 s not
    assert runner.seconds_per_pass == 2.0
    assert summary["plan"] == {"n_models": 4, "tta_axes": (0,), "estimated_s": 48.0, "fits": True,
                               "algo_weights": None}
    assert model.calls[0] == (["ckpt0.pt"], ())                        # the measurement
    assert model.calls[1:] == [(model.checkpoints, (0,))] * 3           # then every step with the plan
    assert json.loads((tmp_path / "out" / "predict.json").read_text())["plan"]["n_models"] == 4


def test_time_budget_reuses_the_measured_pass_when_only_it_fits(tmp_path, phantom):
    ct, pet, cf = write_case(tmp_path, phantom, None)
    clock = FakeClock()
    model = FakeEnsemble(n=3, seconds=5.0, clock=clock)
    runner = Runner(model, PredictSettings(steps=None, time_budget_s=6.0, progress=False), clock=clock)
    runner.run([single_case(ct, pet)], tmp_path / "out")
    assert (runner.plan.n_models, runner.plan.tta_axes) == (1, ()) and model.calls == [(["ckpt0.pt"], ())]


def test_time_budget_with_real_sleeping_model(tmp_path, phantom):
    ct, pet, cf = write_case(tmp_path, phantom, None)
    model = FakeEnsemble(n=4, seconds=0.1)
    runner = Runner(model, PredictSettings(time_budget_s=1.2, progress=False))
    runner.run([single_case(ct, pet)], tmp_path / "out")
    # 0.1 s per pass (margin for a busy CPU up to 0.15 s): 4 models x 2 passes = 0.8 s <= 1.2 < 1.6
    assert (runner.plan.n_models, runner.plan.tta_axes) == (4, (0,))


# ---------------------------------------------------------------- bad input

def test_nan_and_negative_suv_are_zeroed(tmp_path, phantom, caplog):
    pet = phantom.pet.copy()
    pet[0, 0, 0], pet[1, 0, 0], pet[2, 0, 0] = np.nan, -3.0, np.inf
    ct_path = save_volume(tmp_path / "ct.nii.gz", phantom.ct, phantom.affine)
    pet_path = save_volume(tmp_path / "pet.nii.gz", pet, phantom.affine)
    case = load_prediction_case(ct_path, pet_path)
    assert case.pet.array[0, 0, 0] == 0 and case.pet.array[1, 0, 0] == 0 and case.pet.array[2, 0, 0] == 0
    assert np.isfinite(case.pet.array).all() and case.pet.array.min() >= 0
    assert "2 NaN/infinite and 1 negative SUV voxel(s) set to 0" in caplog.text


def test_ct_on_other_grid_is_resampled_onto_pet(tmp_path, phantom, caplog):
    ct_aff = phantom.affine.copy()
    ct_aff[:3, 3] += ct_aff[:3, :3] @ [2, 0, 1]          # CT grid starts 2 voxels along i, 1 along k later
    ct_path = save_volume(tmp_path / "ct.nii.gz", phantom.ct, ct_aff)
    pet_path = save_volume(tmp_path / "pet.nii.gz", phantom.pet, phantom.affine)
    case = load_prediction_case(ct_path, pet_path)
    assert "resampling the CT onto the PET grid" in caplog.text
    assert case.ct.array.shape == phantom.pet.shape and np.allclose(case.ct.affine, phantom.affine)
    np.testing.assert_allclose(case.ct.array[2:, :, 1:], phantom.ct[:-2, :, :-1], atol=1e-3)
    assert (case.ct.array[:2] == -1000).all()              # outside the CT: air
    # a finer CT grid (half the spacing) still lands on the PET voxels it covers
    fine = Volume(np.repeat(np.repeat(np.repeat(phantom.ct, 2, 0), 2, 1), 2, 2), phantom.affine @ np.diag([.5, .5, .5, 1]))
    fine.affine[:3, 3] = phantom.affine[:3, 3] - phantom.affine[:3, :3] @ [.25, .25, .25]
    out = resample_to(fine, Volume(phantom.pet, phantom.affine))
    np.testing.assert_allclose(out.array[1:-1, 1:-1, 1:-1], phantom.ct[1:-1, 1:-1, 1:-1], atol=1e-2)


def test_clicks_outside_refused_by_default_dropped_with_names_when_asked(tmp_path, phantom, caplog):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"tumor": [[1, 2, 3], [40, 2, 3], [-1, 0, 0]], "background": [[5, 5, 99]]}))
    with pytest.raises(InputError, match=r"c.json: click tumor\[1\] \[40, 2, 3\] lies outside the volume"):
        read_clicks(path, (32, 28, 40))
    clicks = read_clicks(path, (32, 28, 40), policy="drop-outside")
    assert clicks.tumor == [(1, 2, 3)] and clicks.background == []
    assert "3 click(s) outside" in caplog.text and "tumor[1] [40, 2, 3]" in caplog.text and "tumor[2] [-1, 0, 0]" in caplog.text
    assert "background[0] [5, 5, 99]" in caplog.text
    ct, pet, _ = write_case(tmp_path, phantom, None)
    bad = tmp_path / "outside.json"
    bad.write_text(json.dumps({"tumor": [[1, 2, 3], [999, 2, 3]]}))
    settings = PredictSettings(progress=False, click_policy="drop-outside")
    Runner(SuvThresholdPredictor(), settings).run([single_case(ct, pet, bad)], tmp_path / "o")
    assert json.loads((tmp_path / "o" / "predict.json").read_text())["cases"][0]["n_tumor_clicks"] == 1
    assert main(["predict", "--models", "suv-threshold", "--ct", str(ct), "--pet", str(pet), "--clicks", str(bad),
                 "--no-progress", "--out", str(tmp_path / "o2")]) == 2
    assert not (tmp_path / "o2" / "predict.json").exists()


def test_missing_inputs_are_clear_errors(tmp_path, phantom, capsys):
    ct, pet, _ = write_case(tmp_path, phantom, None)
    assert main(["predict", "--models", "suv-threshold", "--ct", str(tmp_path / "nope.nii.gz"), "--pet", str(pet),
                 "--out", str(tmp_path / "o")]) == 2
    assert "nope.nii.gz: CT file not found" in capsys.readouterr().err
    assert main(["predict", "--models", str(tmp_path / "no_models"), "--ct", str(ct), "--pet", str(pet),
                 "--out", str(tmp_path / "o")]) == 2
    assert "model folder or checkpoint not found" in capsys.readouterr().err
    assert main(["predict", "--models", "suv-threshold", "--pet", str(pet), "--out", str(tmp_path / "o")]) == 2
    assert "both --ct and --pet" in capsys.readouterr().err


# ---------------------------------------------------------------- command end to end

def test_predict_all_steps_end_to_end(tmp_path, phantom):
    clicks = lesion_clicks(phantom)
    ct, pet, cf = write_case(tmp_path, phantom, clicks)
    assert main(["predict", "--models", "suv-threshold", "--ct", str(ct), "--pet", str(pet), "--clicks", str(cf),
                 "--all-steps", "--save-prob", "--no-progress", "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert summary["cases"][0]["case"] == "case" and summary["cases"][0]["tracer"] == "fdg"   # classified from MIP
    for k in range(11):
        img = nib.load(str(tmp_path / "out" / f"case_pred{k}.nii.gz"))
        mask = np.asarray(img.dataobj)
        assert mask.shape == phantom.pet.shape and mask.dtype == np.uint8
        np.testing.assert_allclose(img.affine, phantom.affine, atol=1e-5)
        step = clicks.first(k)
        assert all(mask[p] == 1 for p in step.tumor) and all(mask[q] == 0 for q in step.background)
        assert (tmp_path / "out" / f"case_prob{k}.nii.gz").is_file()
    # step 0 = the plain baseline, step 1 keeps only the clicked lesion's component
    m0 = np.asarray(nib.load(str(tmp_path / "out" / "case_pred0.nii.gz")).dataobj)
    np.testing.assert_array_equal(m0, phantom.pet >= 2.5)


def test_predict_single_k_and_postprocess_flags(tmp_path, phantom):
    ct, pet, cf = write_case(tmp_path, phantom, lesion_clicks(phantom))
    cfg = tmp_path / "pp.yaml"
    cfg.write_text("min_volume: {enabled: true, min_ml: 1.0e+9}\n")     # removes every unclicked component
    assert main(["predict", "--models", "suv-threshold", "--ct", str(ct), "--pet", str(pet), "--clicks", str(cf),
                 "--k", "0", "--postprocess", str(cfg), "--no-progress", "--out", str(tmp_path / "o1")]) == 0
    assert np.asarray(nib.load(str(tmp_path / "o1" / "case_pred0.nii.gz")).dataobj).sum() == 0
    assert main(["predict", "--models", "suv-threshold", "--ct", str(ct), "--pet", str(pet), "--clicks", str(cf),
                 "--k", "0", "--enable", "min_volume", "--postprocess", "off", "--no-progress",
                 "--out", str(tmp_path / "o2")]) == 0
    saved = json.loads((tmp_path / "o2" / "predict.json").read_text())["postprocess"]
    assert saved["min_volume"]["enabled"] and not saved["click_consistency"]["enabled"]
    assert main(["predict", "--models", "suv-threshold", "--ct", str(ct), "--pet", str(pet),
                 "--k", "11", "--out", str(tmp_path / "o3")]) == 2


def test_predict_folder_and_datalist(tmp_path, phantom):
    root = tmp_path / "data"
    other = generate_case("psma_pp_02", 5, shape=(32, 28, 40), tracer="psma", clicks=False)
    for ph in (phantom, other):
        write_case(root / "imagesTs", ph, None, name=ph.case_id)
        write_clicks(root / "clicks" / f"{ph.case_id}_clicks.json", lesion_clicks(ph))
        (root / "imagesTs" / f"{ph.case_id}_clicks.json").unlink(missing_ok=True)
    assert main(["predict", "--models", "suv-threshold", "--input", str(root), "--no-progress",
                 "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "predict.json").read_text())
    assert {c["case"]: c["tracer"] for c in summary["cases"]} == {"fdg_pp_01": "fdg", "psma_pp_02": "psma"}
    assert all(c["n_tumor_clicks"] == 3 for c in summary["cases"])
    assert (tmp_path / "o" / "psma_pp_02.nii.gz").is_file()
    datalist = {"training": [], "testing": [
        {"image": f"imagesTs/{phantom.case_id}_0000.nii.gz", "pet": f"imagesTs/{phantom.case_id}_0001.nii.gz",
         "clicks": f"clicks/{phantom.case_id}_clicks.json"}]}
    (root / "datalist.json").write_text(json.dumps(datalist))
    assert main(["predict", "--models", "suv-threshold", "--datalist", str(root / "datalist.json"), "--k", "2",
                 "--no-progress", "--out", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "fdg_pp_01_pred2.nii.gz").is_file()


def test_predict_with_tiny_checkpoints_and_budget(tmp_path, phantom):
    """Two untrained tiny checkpoints through petclick.inference: plumbing, planner and PET-grid output."""
    pytest.importorskip("petclick.clicks.encoding")
    pytest.importorskip("petclick.clicks.geometry")
    checkpoint = pytest.importorskip("petclick.runtime.checkpoint")
    import torch

    from petclick.networks.factory import build_network
    kwargs = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_network("segresnet", 4, 1, **kwargs)
        checkpoint.save_checkpoint(tmp_path / "models" / f"r{seed}" / "model.pt", {
            "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": kwargs},
            "in_channels": 4, "out_channels": 1,
            "preprocess": {"roi": [16, 16, 16], "crop_body": False, "encoding": {"encoding": "edt", "channels": "two"}},
            "infer": {"roi": [16, 16, 16], "overlap": 0.25, "sw_batch_size": 1}})
    clicks = lesion_clicks(phantom)
    ct, pet, cf = write_case(tmp_path, phantom, clicks)
    assert main(["predict", "--models", str(tmp_path / "models"), "--ct", str(ct), "--pet", str(pet),
                 "--clicks", str(cf), "--k", "2", "--time-budget", "1000", "--save-prob", "--device", "cpu",
                 "--no-progress", "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert summary["n_checkpoints"] == 2 and summary["plan"]["n_models"] == 2
    prob = nib.load(str(tmp_path / "out" / "case_prob2.nii.gz"))
    assert prob.shape == phantom.pet.shape and np.allclose(prob.affine, phantom.affine, atol=1e-5)
    p = np.asarray(prob.dataobj)
    assert np.isfinite(p).all() and 0.0 <= p.min() and p.max() <= 1.0
    mask = np.asarray(nib.load(str(tmp_path / "out" / "case_pred2.nii.gz")).dataobj)
    assert all(mask[q] == 1 for q in clicks.first(2).tumor) and all(mask[q] == 0 for q in clicks.first(2).background)


def test_predict_reads_mha_inputs(tmp_path, phantom):
    from petclick.io.sitk import save_mha
    ct = save_mha(tmp_path / "x_ct.mha", phantom.ct, affine=phantom.affine)
    pet = save_mha(tmp_path / "x_pet.mha", phantom.pet, affine=phantom.affine)
    assert main(["predict", "--models", "suv-threshold", "--ct", str(ct), "--pet", str(pet), "--case-id", "x",
                 "--no-progress", "--out", str(tmp_path / "o")]) == 0
    img = nib.load(str(tmp_path / "o" / "x.nii.gz"))
    np.testing.assert_allclose(img.affine, phantom.affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(img.dataobj), phantom.pet >= 2.5)
