"""Per-algorithm ensemble weights in EnsemblePredictor, load_model_predictor and the CLIs (tiny CPU models)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from petclick.cli import main
from petclick.inference.weights import interleave_by_algo, parse_algo_weights
from petclick.core.errors import InputError
from petclick.runtime.checkpoint import find_checkpoints, save_checkpoint
from petclick.inference.predictor import EnsemblePredictor, load_model_predictor
from petclick.io.clickfile import Clicks, write_clicks
from petclick.io.images import load_case, save_volume
from petclick.networks.factory import build_network
from petclick.phantoms import generate_case
from petclick.core.yamlio import write_yaml

TINY = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
# bundle folder -> (algorithm recorded in the checkpoint, seed); every network is a tiny SegResNet
MEMBERS = {"dints_0": ("dints", 2), "segresnet_0": ("segresnet", 0), "segresnet_1": ("segresnet", 1)}


def tiny_checkpoint(path, algo: str, seed: int):
    """An untrained tiny SegResNet checkpoint; weights scaled up so the members' probabilities differ."""
    torch.manual_seed(seed)
    net = build_network("segresnet", 4, 1, **TINY)
    state = {k: v * 3 if v.is_floating_point() else v for k, v in net.state_dict().items()}
    return save_checkpoint(path, {
        "state_dict": state, "network": {"name": "segresnet", "kwargs": TINY}, "in_channels": 4, "out_channels": 1,
        "algo": algo, "preprocess": {"roi": [16, 16, 16], "crop_body": False,
                                     "encoding": {"encoding": "edt", "channels": "two"}},
        "infer": {"roi": [16, 16, 16], "overlap": 0.25, "sw_batch_size": 1}})


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny models run ~20x faster than with threads competing for 2 busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A fake AutoRunner work_dir (input.yaml without weights, 3 checkpoints), a case, clicks and
    every checkpoint's own probability."""
    root = tmp_path_factory.mktemp("weights")
    work = root / "work_dir"
    for bundle, (algo, seed) in MEMBERS.items():
        tiny_checkpoint(work / bundle / "model" / "repeat0" / "model.pt", algo, seed)
    write_yaml(work / "input.yaml", {"modality": "CT", "datalist": "datalist.json", "dataroot": "."})
    ph = generate_case("fdg_w_01", 3, shape=(32, 28, 40), tracer="fdg", clicks=False)
    ct = save_volume(root / "case_0000.nii.gz", ph.ct, ph.affine)
    pet = save_volume(root / "case_0001.nii.gz", ph.pet, ph.affine)
    lesion = [tuple(int(v) for v in q) for q in np.argwhere(ph.label)]
    clicks = Clicks(lesion[:2], [tuple(int(v) for v in np.argwhere(ph.organs == 10)[0])])
    cf = write_clicks(root / "case_clicks.json", clicks)
    case = load_case(ct, pet)
    ckpts = {p.parts[-4]: p for p in find_checkpoints(work)}
    single = {b: EnsemblePredictor([p]).predict(case, clicks) for b, p in ckpts.items()}
    assert np.abs(single["dints_0"] - single["segresnet_0"]).max() > 1e-2  # the members really differ
    return {"work": work, "ckpts": ckpts, "case": case, "clicks": clicks, "single": single,
            "files": (ct, pet, cf)}


def _means(s):
    seg = (s["single"]["segresnet_0"] + s["single"]["segresnet_1"]) / 2
    return seg, s["single"]["dints_0"]


def test_weighted_mean_is_the_weighted_mean_of_algorithm_means(setup):
    seg, dints = _means(setup)
    ckpts = list(setup["ckpts"].values())
    prob = EnsemblePredictor(ckpts, algo_weights={"segresnet": 3, "dints": 1}).predict(setup["case"], setup["clicks"])
    np.testing.assert_allclose(prob, 0.75 * seg + 0.25 * dints, atol=1e-6)
    plain = (setup["single"]["segresnet_0"] + setup["single"]["segresnet_1"] + dints) / 3
    assert np.abs(prob - plain).max() > 1e-3  # not the plain mean over checkpoints
    # a subset (what the time-budget planner runs): the weights apply to the algorithms selected
    sub = EnsemblePredictor(ckpts, algo_weights={"segresnet": 3})
    both = sub.predict_with([setup["ckpts"]["segresnet_0"], setup["ckpts"]["dints_0"]], (), setup["case"], setup["clicks"])
    np.testing.assert_allclose(both, 0.75 * setup["single"]["segresnet_0"] + 0.25 * dints, atol=1e-6)


def test_no_weights_is_the_plain_mean(setup):
    s = setup["single"]
    predictor = EnsemblePredictor(list(setup["ckpts"].values()))
    assert predictor.algo_weights is None
    np.testing.assert_allclose(predictor.predict(setup["case"], setup["clicks"]),
                               (s["segresnet_0"] + s["segresnet_1"] + s["dints_0"]) / 3, atol=1e-6)
    # {}: every algorithm weighs 1 (means of algorithms, not of checkpoints)
    seg, dints = _means(setup)
    equal = EnsemblePredictor(list(setup["ckpts"].values()), algo_weights={})
    np.testing.assert_allclose(equal.predict(setup["case"], setup["clicks"]), (seg + dints) / 2, atol=1e-6)


def test_weight_zero_drops_an_algorithm(setup):
    seg, _ = _means(setup)
    ckpts = setup["ckpts"]
    predictor = EnsemblePredictor(list(ckpts.values()), algo_weights={"dints": 0})
    assert predictor.checkpoints == [ckpts["segresnet_0"], ckpts["segresnet_1"]]
    assert predictor.algo_weights == {"dints": 0.0, "segresnet": 1.0} and list(predictor.algos) == ["segresnet"]
    np.testing.assert_allclose(predictor.predict(setup["case"], setup["clicks"]), seg, atol=1e-6)
    everything = predictor.predict_with(list(ckpts.values()), (), setup["case"], setup["clicks"])
    np.testing.assert_allclose(everything, seg, atol=1e-6)  # weight 0 also drops it from an explicit subset
    with pytest.raises(InputError, match="ensemble_weights.*weight 0"):
        predictor.predict_with([ckpts["dints_0"]], (), setup["case"], setup["clicks"])
    with pytest.raises(InputError, match="ensemble_weights.*weight 0"):
        EnsemblePredictor(list(ckpts.values()), algo_weights={"dints": 0, "segresnet": 0})


def test_checkpoints_interleave_algorithms(setup):
    c = setup["ckpts"]
    assert EnsemblePredictor(list(c.values())).checkpoints == [c["dints_0"], c["segresnet_0"], c["segresnet_1"]]
    weighted = EnsemblePredictor(list(c.values()), algo_weights={"segresnet": 3})
    assert weighted.checkpoints == [c["segresnet_0"], c["dints_0"], c["segresnet_1"]]  # heaviest first
    items = ["a0", "a1", "a2", "b0", "c0", "c1"]
    algos = ["a", "a", "a", "b", "c", "c"]
    assert interleave_by_algo(items, algos) == ["a0", "b0", "c0", "a1", "c1", "a2"]
    assert interleave_by_algo(items, algos, {"c": 2, "b": 0.5}) == ["c0", "a0", "b0", "c1", "a1", "a2"]
    assert interleave_by_algo(["x0", "x1"], ["x", "x"]) == ["x0", "x1"]  # one algorithm: order kept


def test_work_dir_input_yaml_weights(setup, tmp_path, caplog):
    import shutil
    work = tmp_path / "work_dir"
    shutil.copytree(setup["work"], work)
    assert load_model_predictor(work).algo_weights is None
    write_yaml(work / "input.yaml", {"modality": "CT", "ensemble_weights": {"segresnet": 3, "dints": 1}})
    with caplog.at_level("INFO"):
        predictor = load_model_predictor(work)
    assert predictor.algo_weights == {"dints": 1.0, "segresnet": 3.0}
    assert "input.yaml" in caplog.text and "ensemble weights" in caplog.text
    seg, dints = _means(setup)
    np.testing.assert_allclose(predictor.predict(setup["case"], setup["clicks"]), 0.75 * seg + 0.25 * dints,
                               atol=1e-6)
    assert load_model_predictor(work, algo_weights={"dints": 0}).algo_weights == {"dints": 0.0, "segresnet": 1.0}
    write_yaml(work / "input.yaml", {"modality": "CT", "ensemble_weights": {"segresnet": -2}})
    with pytest.raises(InputError, match=r"input.yaml ensemble_weights.*>= 0"):
        load_model_predictor(work)


def test_parse_algo_weights():
    assert parse_algo_weights(["segresnet=2", "dints=1"]) == {"segresnet": 2.0, "dints": 1.0}
    assert parse_algo_weights(None) is None
    for bad, problem in (("segresnet", "ALGO=WEIGHT"), ("=2", "ALGO=WEIGHT"), ("segresnet=", "ALGO=WEIGHT"),
                         ("segresnet=-1", ">= 0"), ("segresnet=x", "number"), ("segresnet=nan", "finite")):
        with pytest.raises(InputError, match=f"--algo-weights: .*{problem}"):
            parse_algo_weights([bad])
    with pytest.raises(InputError, match="twice"):
        parse_algo_weights(["a=1", "a=2"])


def test_predict_cli_algo_weights(setup, tmp_path):
    ct, pet, cf = setup["files"]
    out = tmp_path / "out"
    assert main(["predict", "--models", str(setup["work"]), "--algo-weights", "segresnet=2", "dints=1",
                 "--ct", str(ct), "--pet", str(pet), "--clicks", str(cf), "--time-budget", "1000", "--save-prob",
                 "--postprocess", "off", "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "predict.json").read_text())
    assert summary["algo_weights"] == summary["plan"]["algo_weights"] == {"segresnet": 2.0, "dints": 1.0}
    assert summary["plan"]["n_models"] == 3
    axes = tuple(summary["plan"]["tta_axes"])  # the budget also chose mirror axes
    ref = EnsemblePredictor(list(setup["ckpts"].values()), algo_weights={"segresnet": 2, "dints": 1})
    np.testing.assert_allclose(np.asarray(nib.load(str(out / "case_prob.nii.gz")).dataobj),
                               ref.predict_with(ref.checkpoints, axes, setup["case"], setup["clicks"]), atol=1e-6)


@pytest.mark.parametrize("command", ["predict", "gc"])
@pytest.mark.parametrize("value,problem", [("segresnet", "ALGO=WEIGHT"), ("segresnet=-1", ">= 0")])
def test_cli_rejects_bad_algo_weights(command, value, problem, setup, tmp_path, capsys):
    ct, pet, _ = setup["files"]
    args = (["--ct", str(ct), "--pet", str(pet), "--out", str(tmp_path / "o")] if command == "predict"
            else ["--input", str(tmp_path), "--output", str(tmp_path / "o")])
    assert main([command, "--models", str(setup["work"]), "--algo-weights", value, *args]) == 2
    err = capsys.readouterr().err
    assert "--algo-weights" in err and problem in err and not (tmp_path / "o").exists()
