"""Model choice by click count: the range mapping's checks, the routed session against each model
alone (tile caches and journals kept per model), and `predict` / `gc` / `interactive` honouring it."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from petclick.cli import main
from petclick.core.errors import InputError
from petclick.inference.predictors import SuvThresholdPredictor, get_predictor
from petclick.inference.routing import StepRoutedPredictor, clicks_step, parse_step_routes
from petclick.inference.session import InteractiveSession
from petclick.inference.steps import official_clicks, run_steps
from petclick.io.clickfile import Clicks, write_clicks
from petclick.io.images import CaseVolumes, Volume, save_volume
from petclick.networks.factory import build_network
from petclick.phantoms import generate_case
from petclick.runtime.checkpoint import save_checkpoint

KWARGS = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
ROI = [16, 16, 16]
SHAPE = (32, 28, 40)
# ten clicks of each kind spread over the volume: each step's clicks reach different windows
CLICKS = Clicks([(3 + 3 * i, 3 + 2 * i, 4 + 3 * i) for i in range(10)],
                [(28 - 2 * i, 3 + 2 * i, 36 - 3 * i) for i in range(10)])


@pytest.fixture(scope="module")
def model_sets(tmp_path_factory):
    """Two model sets (folders a and b), one untrained tiny checkpoint each, different weights."""
    root = tmp_path_factory.mktemp("routing_models")
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        net = build_network("segresnet", 4, 1, **KWARGS)
        save_checkpoint(root / name / "model.pt", {
            "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": KWARGS},
            "in_channels": 4, "out_channels": 1,
            "preprocess": {"roi": ROI, "crop_body": False, "encoding": {"encoding": "edt", "channels": "two"}},
            "infer": {"roi": ROI, "overlap": 0.25, "sw_batch_size": 2}})
    return root / "a", root / "b"


@pytest.fixture(scope="module")
def phantom():
    return generate_case("fdg_route_01", 4, shape=SHAPE, tracer="fdg", clicks=False)


def _case(ph) -> CaseVolumes:
    return CaseVolumes(Volume(ph.ct, ph.affine), Volume(ph.pet, ph.affine))


def _probs(session: InteractiveSession) -> list[np.ndarray]:
    return [pred.prob.copy() for _, pred in run_steps(session, range(11), official_clicks(CLICKS))]


# ---------------------------------------------------------------- the mapping

def test_ranges_parse_from_the_command_line_and_yaml(tmp_path):
    assert parse_step_routes(["0-5=dir_a", "6-10=dir_b,dir_c"]) == {"0-5": ["dir_a"], "6-10": ["dir_b", "dir_c"]}
    assert parse_step_routes({"0": "x", "1-10": ["y"]}) == {"0": ["x"], "1-10": ["y"]}
    (tmp_path / "wa").mkdir()
    cfg = tmp_path / "by_step.yaml"
    cfg.write_text("predictor_by_step: {0-5: wa, 6-10: suv-threshold}\n")
    assert parse_step_routes([str(cfg)]) == {"0-5": [str(tmp_path / "wa")], "6-10": ["suv-threshold"]}


@pytest.mark.parametrize("items,problem", [
    (["0-5=a", "5-10=b"], "step ranges 0-5 and 5-10 overlap (steps 5-5)"),
    (["0-3=a", "2-10=b"], "step ranges 0-3 and 2-10 overlap (steps 2-3)"),
    (["0-4=a", "6-10=b"], "leave steps 5 without a model"),
    (["1-5=a", "6-9=b"], "leave steps 0, 10 without a model"),
    (["0-5=a"], "leave steps 6-10 without a model"),
    (["0-5=a", "6-11=b"], "0 <= LO <= HI <= 10"),
    (["5-0=a", "6-10=b"], "0 <= LO <= HI <= 10"),
    (["zero-5=a", "6-10=b"], "is not 'LO-HI' or 'K'"),
    (["0-5", "6-10=b"], "is not RANGE=MODELS"),
    (["0-5=a", "0-5=b", "6-10=c"], "given twice"),
    (["0-5=", "6-10=b"], "empty model name"),
])
def test_overlapping_missing_and_malformed_ranges_are_clear_errors(items, problem):
    with pytest.raises(InputError, match="--predictor-by-step") as err:
        parse_step_routes(items)
    assert problem in str(err.value)


def test_yaml_errors_name_the_file(tmp_path):
    cfg = tmp_path / "routes.yaml"
    cfg.write_text("{0-5: a, 7-10: b}\n")
    with pytest.raises(InputError, match="routes.yaml: step ranges 0-5, 7-10 leave steps 6 without a model"):
        parse_step_routes([str(cfg)])
    with pytest.raises(InputError, match="leave steps 5 without"):        # get_predictor checks a mapping too
        get_predictor({"0-4": "suv-threshold", "6-10": "suv-threshold"})


def test_each_step_gets_its_ranges_model():
    """Steps count clicks of each kind (the larger count); every step 0..10 runs its range's predictor."""
    class Fixed:
        def __init__(self, value):
            self.name, self.value = f"fixed{value}", value

        def predict(self, case, clicks):
            return np.full(case.shape, self.value, np.float32)

    routes = parse_step_routes(["0-2=x", "3=y", "4-10=x"])
    from petclick.inference.routing import step_ranges
    routed = StepRoutedPredictor(step_ranges(routes), {("x",): Fixed(0.0), ("y",): Fixed(1.0)})
    assert len(routed.members) == 2 and routed.route == [0, 0, 0, 1] + [0] * 7
    case = CaseVolumes(Volume(np.zeros((4, 4, 4), np.float32), np.eye(4)), Volume(np.zeros((4, 4, 4), np.float32), np.eye(4)))
    for k in range(11):
        assert float(routed.predict(case, CLICKS.first(k)).max()) == (1.0 if k == 3 else 0.0)
    assert clicks_step(Clicks(CLICKS.tumor[:3], CLICKS.background[:1])) == 3
    assert routed.index(Clicks(CLICKS.tumor[:1], CLICKS.background[:3])) == 1


# ---------------------------------------------------------------- the session

@pytest.mark.parametrize("mode", ["exact", "naive"])
def test_routed_session_equals_each_model_alone_at_its_steps(model_sets, phantom, mode):
    """Steps 0-5 give model a's probabilities, 6-10 model b's (as b alone run through every step),
    with each model's tile cache; going back to step 4 restores a's state without a network pass."""
    a, b = model_sets
    case = _case(phantom)
    routed = get_predictor({"0-5": [str(a)], "6-10": [str(b)]})
    alone_a = _probs(InteractiveSession(get_predictor(a), case, mode=mode))
    alone_b = _probs(InteractiveSession(get_predictor(b), case, mode=mode))
    session = InteractiveSession(routed, case, mode=mode)
    got = _probs(session)
    assert max(float(np.abs(alone_a[k] - alone_b[k]).max()) for k in range(11)) > 1e-3   # the models differ
    for k in range(11):
        want = alone_a[k] if k <= 5 else alone_b[k]
        np.testing.assert_allclose(got[k], want, atol=1e-5, err_msg=f"step {k}")
    assert len(session.engines) == 2 and session.counters["mode"] == mode
    session.set_clicks(CLICKS.first(4))
    back = session.predict()
    np.testing.assert_allclose(back.prob, alone_a[4], atol=1e-5)
    if mode == "exact":
        assert back.tiles_computed == 0            # a's journal restores step 4


def test_routed_session_saves_and_continues(model_sets, phantom, tmp_path):
    a, b = model_sets
    case = _case(phantom)
    s = InteractiveSession.open({"0-5": str(a), "6-10": str(b)}, phantom.ct, phantom.pet, affine=phantom.affine,
                                mode="exact")
    for k in range(8):
        s.set_clicks(CLICKS.first(k))
        s.predict()
    s.save(tmp_path / "state")
    loaded = InteractiveSession.load(tmp_path / "state", case=case)
    assert isinstance(loaded.predictor, StepRoutedPredictor) and loaded.step == s.step
    loaded.set_clicks(CLICKS.first(8))
    alone = InteractiveSession(get_predictor(b), case, mode="exact")
    alone.set_clicks(CLICKS.first(8))
    np.testing.assert_allclose(loaded.predict().prob, alone.predict().prob, atol=1e-5)


# ---------------------------------------------------------------- the commands

def _write(folder, ph, clicks):
    ct = save_volume(folder / "case_0000.nii.gz", ph.ct, ph.affine)
    pet = save_volume(folder / "case_0001.nii.gz", ph.pet, ph.affine)
    return ct, pet, write_clicks(folder / "case_clicks.json", clicks)


def _prob(folder, k):
    return np.asarray(nib.load(str(folder / f"case_prob{k}.nii.gz")).dataobj)


def test_predict_routes_every_step(model_sets, phantom, tmp_path, capsys):
    a, b = model_sets
    ct, pet, cf = _write(tmp_path, phantom, CLICKS)
    common = ["--ct", str(ct), "--pet", str(pet), "--clicks", str(cf), "--all-steps", "--save-prob",
              "--postprocess", "off", "--no-progress", "--device", "cpu"]
    assert main(["predict", "--predictor-by-step", "0-5=suv-threshold", f"6-10={b}", *common,
                 "--out", str(tmp_path / "routed")]) == 0
    assert main(["predict", "--models", str(b), *common, "--out", str(tmp_path / "b")]) == 0
    record = json.loads((tmp_path / "routed" / "predict.json").read_text())
    assert record["predictor_by_step"] == {"0-5": ["suv-threshold"], "6-10": [str(b)]}
    suv = SuvThresholdPredictor()
    for k in range(11):
        want = suv.predict(_case(phantom), CLICKS.first(k)) if k <= 5 else _prob(tmp_path / "b", k)
        np.testing.assert_allclose(_prob(tmp_path / "routed", k), want, atol=1e-5, err_msg=f"step {k}")
    assert main(["predict", "--predictor-by-step", "0-5=suv-threshold", "5-10=suv-threshold", *common,
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--predictor-by-step: step ranges 0-5 and 5-10 overlap (steps 5-5)")
    assert main(["predict", "--models", "suv-threshold", "--predictor-by-step", "0-10=suv-threshold", *common,
                 "--out", str(tmp_path / "both")]) == 2
    assert "not both" in capsys.readouterr().err


def test_gc_routes_by_the_jobs_click_count(model_sets, phantom, tmp_path):
    from petclick.io.sitk import load_mha, save_mha

    a, b = model_sets
    inp = tmp_path / "input"
    save_mha(inp / "images" / "pet" / "pet-uuid.mha", phantom.pet, affine=phantom.affine)
    save_mha(inp / "images" / "ct" / "ct-uuid.mha", phantom.ct, affine=phantom.affine)
    write_clicks(inp / "lesion-clicks.json", CLICKS.first(3), format="gc")
    cfg = tmp_path / "by_step.yaml"
    cfg.write_text(f"predictor_by_step:\n  0-2: suv-threshold\n  3-10: {b}\n")
    masks = {}
    for name, flags in (("routed", ["--predictor-by-step", str(cfg)]), ("b", ["--models", str(b)]),
                        ("suv", ["--models", "suv-threshold"])):
        assert main(["gc", "--input", str(inp), "--output", str(tmp_path / name), "--device", "cpu",
                     "--postprocess", "off", *flags]) == 0
        masks[name] = load_mha(tmp_path / name / "images" / "tumor-lesion-segmentation" / "ct-uuid.mha").array
    assert not np.array_equal(masks["b"], masks["suv"])
    np.testing.assert_array_equal(masks["routed"], masks["b"])      # 3 clicks: range 3-10


def test_interactive_command_takes_a_choice_by_step(tiny_cohort, tmp_path):
    assert main(["interactive", "--predictor-by-step", "0-5=suv-threshold", "6-10=suv-threshold",
                 "--datalist", str(tiny_cohort), "--out", str(tmp_path / "r"), "--no-mip"]) == 0
    assert main(["interactive", "--predictor", "suv-threshold", "--datalist", str(tiny_cohort),
                 "--out", str(tmp_path / "s"), "--no-mip"]) == 0
    routed = json.loads((tmp_path / "r" / "summary.json").read_text())
    plain = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert routed["overall"] == plain["overall"] and routed["n_evaluated"] == plain["n_evaluated"] > 0


def test_routes_by_click_count_are_refused_for_autopet_v_scribbles(tiny_cohort, tmp_path, capsys):
    """autoPET V scribble states have no click count: the pair is one error line, exit 2, in both commands."""
    assert main(["interactive", "--predictor-by-step", "0-5=suv-threshold", "6-10=suv-threshold",
                 "--protocol", "autopet-v", "--datalist", str(tiny_cohort), "--out", str(tmp_path / "r"),
                 "--no-mip"]) == 2
    assert "--predictor-by-step: routes models by click count" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    assert main(["gc", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--protocol", "autopet-v",
                 "--predictor-by-step", "0-5=suv-threshold", "6-10=suv-threshold"]) == 2
    assert "autopet-v scribble steps have no click count" in capsys.readouterr().err
