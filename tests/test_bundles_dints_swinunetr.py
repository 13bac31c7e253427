"""The dints and swinunetr bundles on the segresnet bundle's contract: configs filled from the data
analysis with ROIs derived from each network, one training epoch per network, InferClass output on
the PET grid, checkpoint input-channel expansion through the bundle config (0 clicks = the original
model), the DiNTS search stage, and AutoRunner training both on 2 folds x 1 repeat and ensembling
all four bundles."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from petclick.core.yamlio import write_yaml

REPO = Path(__file__).resolve().parent.parent
TINY = {"dints": {"channel_mul": 0.25, "num_blocks": 3, "num_depths": 3},
        "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]},
        "segresnet": {"init_filters": 4, "blocks_down": [1, 1, 1], "dsdepth": 2}}


def _configs(bundle: Path) -> list[str]:
    return [str(p) for p in sorted((bundle / "configs").glob("*.yaml"))]


def _hyper(bundle: Path) -> dict:
    return yaml.safe_load((bundle / "configs" / "hyper_parameters.yaml").read_text())


def _testing_case(tiny_cohort) -> dict:
    from petclick.io.datalist import load_datalist, resolve_entry

    return resolve_entry(load_datalist(tiny_cohort)["testing"][0], tiny_cohort.parent)


@pytest.mark.parametrize("algo", ["dints", "swinunetr"])
def test_scripts_mirror_segresnet_and_algo_class(algo):
    import importlib.util

    seg = sorted(p.name for p in (REPO / "petclick" / "bundles" / "segresnet").rglob("*") if p.is_file())
    mine = sorted(p.name for p in (REPO / "petclick" / "bundles" / algo).rglob("*") if p.is_file())
    assert set(seg) <= set(mine) and set(mine) - set(seg) <= {"search.py"}
    spec = importlib.util.spec_from_file_location(f"{algo}_algo_t", REPO / "petclick" / "bundles" / algo / "scripts" / "algo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from petclick.auto3dseg.algo import PetclickBundleAlgo

    assert issubclass(getattr(module, f"{algo.capitalize()}Algo"), PetclickBundleAlgo)


def test_presets_fill_network_and_roi_from_the_divisor(make_bundle, tmp_path):
    from petclick.networks import roi_divisor

    # autopet: the full-size networks; ROI 128^3 shrunk to the 48x48x64 data on each network's divisor
    d = _hyper(make_bundle(tmp_path / "a", template="dints", preset="autopet"))
    s = _hyper(make_bundle(tmp_path / "b", template="swinunetr", preset="autopet"))
    assert d["network"]["kwargs"]["num_depths"] == 4 and d["network"]["kwargs"]["channel_mul"] == 1.0
    assert roi_divisor("dints", **d["network"]["kwargs"]) == 16 and d["data"]["roi"] == [48, 48, 64]
    assert s["network"]["kwargs"]["feature_size"] == 48 and s["data"]["roi"] == [32, 32, 64]
    assert d["search"]["enabled"] is False and d["search"]["num_epochs"] == 40
    # demo: 3 depths -> divisor 8 (the template's 32x32x48 stays); swinunetr always 32
    d = _hyper(make_bundle(tmp_path / "c", template="dints"))
    assert roi_divisor("dints", **d["network"]["kwargs"]) == 8 and d["data"]["roi"] == [32, 32, 48]
    s = _hyper(make_bundle(tmp_path / "d", template="swinunetr"))
    assert all(r % 32 == 0 for r in s["data"]["roi"]) and s["infer"]["roi"] == [32, 32, 64]


@pytest.fixture(scope="module")
def trained(make_bundle, tmp_path_factory):
    """One bundle per network, trained one short epoch in-process by the shared loop."""
    from petclick.training.loop import run

    out = {}
    for algo in ("dints", "swinunetr"):
        bundle = make_bundle(tmp_path_factory.mktemp(algo), template=algo,
                             algo_overrides={algo: {"network": {"kwargs": TINY[algo]}}})
        scores = run(_configs(bundle), **{"training#num_iterations_per_epoch": 2})
        out[algo] = (bundle, scores)
    return out


@pytest.mark.parametrize("algo", ["dints", "swinunetr"])
def test_one_epoch_writes_a_self_describing_checkpoint(trained, algo):
    from petclick.runtime.checkpoint import build_model, read_checkpoint

    bundle, scores = trained[algo]
    assert list(scores) == [0] and 0.0 <= scores[0] <= 1.0
    ckpt = read_checkpoint(bundle / "model" / "repeat0" / "model.pt")
    assert ckpt["network"]["name"] == algo and ckpt["in_channels"] == 4 and ckpt["epoch"] == 1
    assert ckpt["preprocess"]["roi"] == _hyper(bundle)["data"]["roi"]
    if algo == "dints":  # the default topology is inlined, so the file alone rebuilds the model
        assert ckpt["network"]["kwargs"]["num_depths"] == 3
    model = build_model(ckpt)
    with torch.no_grad():
        y = model(torch.zeros(1, 4, *ckpt["preprocess"]["roi"]))
    assert tuple(y.shape) == (1, 1, *ckpt["preprocess"]["roi"])


@pytest.mark.parametrize("algo", ["dints", "swinunetr"])
def test_inferclass_output_on_the_pet_grid(trained, tiny_cohort, algo):
    import importlib.util

    bundle, _ = trained[algo]
    spec = importlib.util.spec_from_file_location(f"{algo}_infer_t", bundle / "scripts" / "infer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    entry = _testing_case(tiny_cohort)
    out = module.InferClass(_configs(bundle), rank=0).infer(
        {"image": entry["image"], "pet": entry["pet"], "clicks": entry["clicks"]})
    pet = nib.load(entry["pet"])
    assert tuple(out.shape) == (1, *pet.shape)
    np.testing.assert_allclose(np.asarray(out.affine), pet.affine, atol=1e-5)
    values = out.numpy()
    assert 0.0 <= values.min() and values.max() <= 1.0 and np.isfinite(values).all()


@pytest.mark.parametrize("algo", ["segresnet", "dints", "swinunetr"])
def test_channel_expansion_through_the_bundle_config(make_bundle, tmp_path, algo):
    """A CT+PET checkpoint named in YAML: the click-guided model built by the training loop computes
    exactly the pretrained function at 0 clicks (and whatever the click channels hold)."""
    from petclick.core.errors import InputError
    from petclick.networks import build_network
    from petclick.config.bundle import load_bundle_config
    from petclick.training.loop import _build_model, describe

    torch.manual_seed(0)
    pretrained = build_network(algo, 2, 1, **TINY[algo]).eval()
    path = tmp_path / "ct_pet.pt"
    torch.save({"state_dict": pretrained.state_dict()}, path)
    bundle = make_bundle(tmp_path / "b", template=algo, algo_overrides={algo: {"network": {
        "kwargs": TINY[algo], "init_checkpoint": str(path), "image_channels": 2}}})
    cfg = load_bundle_config(_configs(bundle))
    assert cfg["network"]["init_checkpoint"] == str(path)
    model = _build_model(cfg, describe(cfg)).eval()
    roi = cfg["data"]["roi"]
    image = torch.rand(1, 2, *roi)
    zero_clicks = torch.cat([image, torch.zeros(1, 2, *roi)], 1)
    some_clicks = torch.cat([image, torch.rand(1, 2, *roi)], 1)
    with torch.no_grad():
        ref = pretrained(image)
        torch.testing.assert_close(model(zero_clicks), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model(some_clicks), ref, rtol=1e-5, atol=1e-5)
        assert not torch.equal(build_network(algo, 4, 1, **TINY[algo]).eval()(zero_clicks), ref)
    cfg["network"]["image_channels"] = 1  # the checkpoint has 2: named as the problem
    with pytest.raises(InputError, match="expected image_channels=1"):
        _build_model(cfg, describe(cfg))


def test_dints_search_stage_writes_the_code_training_uses(make_bundle, tmp_path):
    from petclick.runtime.checkpoint import read_checkpoint
    from petclick.networks import load_arch_code
    from petclick.training import dints_search
    from petclick.training.loop import run

    bundle = make_bundle(tmp_path, template="dints", algo_overrides={"dints": {
        "network": {"kwargs": TINY["dints"]}, "search": {"enabled": True, "num_epochs": 2, "max_steps_per_epoch": 1}}})
    assert dints_search.search_pending(bundle)
    code_path = Path(dints_search.run(_configs(bundle)))
    assert code_path == bundle / "arch_code.json" and not dints_search.search_pending(bundle)
    code = load_arch_code(code_path)
    assert code["num_blocks"] == 3 and code["num_depths"] == 3
    hyper = _hyper(bundle)
    assert hyper["network"]["kwargs"]["arch_code_path"] == str(code_path)
    assert (bundle / "configs" / "hyper_parameters.yaml").read_text().startswith("# Generated by petclick")
    run(_configs(bundle), **{"training#num_iterations_per_epoch": 1})
    ckpt = read_checkpoint(bundle / "model" / "repeat0" / "model.pt")
    assert ckpt["network"]["kwargs"]["arch_code"] == code and "arch_code_path" not in ckpt["network"]["kwargs"]


@pytest.fixture(scope="module")
def autorunner(tiny_cohort, tmp_path_factory):
    """AutoRunner trains dints (with its search stage on) and swinunetr on 2 folds x 1 repeat and
    ensembles all four bundles (AlgoEnsembleBestN); records which bundles the ensemble called."""
    from monai.apps.auto3dseg import AutoRunner

    from petclick.inference import bundle as bundle_mod

    tmp_path = tmp_path_factory.mktemp("autorunner")
    work = tmp_path / "work_dir"
    cfg = {"modality": "CT", "datalist": str(tiny_cohort), "dataroot": str(tiny_cohort.parent),
           "templates_path_or_url": str(REPO / "petclick" / "bundles"), "algos": ["dints", "swinunetr"], "work_dir": str(work),
           "num_fold": 2, "sigmoid": True, "preset": "demo", "num_repeats": 1,
           "overrides": {"training": {"num_epochs": 1, "num_iterations_per_epoch": 1}},
           "algo_overrides": {"dints": {"network": {"kwargs": TINY["dints"]},
                                        "search": {"enabled": True, "num_epochs": 2, "max_steps_per_epoch": 1}},
                              "swinunetr": {"network": {"kwargs": TINY["swinunetr"]}}},
           "ensemble_weights": {"dints": 0, "swinunetr": 1}}
    write_yaml(tmp_path / "input.yaml", cfg)
    calls: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CMD_PREFIX", sys.executable)  # training subprocesses run this interpreter
        infer = bundle_mod.BundleInferer.infer
        mp.setattr(bundle_mod.BundleInferer, "infer", lambda self, f: calls.append(str(self.checkpoints[0])) or infer(self, f))
        AutoRunner(input=str(tmp_path / "input.yaml")).set_ensemble_method("AlgoEnsembleBestN", n_best=4).run()
    return work, calls


def test_autorunner_dints_and_swinunetr_two_folds(autorunner, tiny_cohort):
    from petclick.io.datalist import load_datalist

    work, calls = autorunner
    bundles = [f"{a}_{f}" for a in ("dints", "swinunetr") for f in (0, 1)]
    checkpoints = sorted(str(p.relative_to(work)) for p in work.rglob("model.pt"))
    assert checkpoints == [f"{b}/model/repeat0/model.pt" for b in bundles]
    for fold in (0, 1):
        assert (work / f"dints_{fold}" / "arch_code.json").is_file()  # the search ran before training
    testing = load_datalist(tiny_cohort)["testing"]
    assert sorted({c.split("/")[-4] for c in calls}) == bundles and len(calls) == 4 * len(testing)
    outputs = sorted((work / "ensemble_output").rglob("*.nii.gz"))
    assert len(outputs) == len(testing)
    for entry in testing:
        pet = nib.load(tiny_cohort.parent / entry["pet"])
        out = next(p for p in outputs if p.name == Path(entry["image"]).name.replace(".nii.gz", "_ensemble.nii.gz"))
        mask = nib.load(out)
        assert mask.shape == pet.shape and np.allclose(mask.affine, pet.affine, atol=1e-5)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}


def test_weighted_ensembles(autorunner, tiny_cohort, tmp_path):
    """input.yaml ensemble_weights {dints: 0, swinunetr: 1}: the weighted AutoRunner ensemble equals
    the swinunetr bundles' mean, and the work_dir's predictor uses those weights; the predictor weighs
    algorithm means (3:1 here) and interleaves algorithms."""
    from petclick.cli import main
    from petclick.inference.weights import check_algo_weights
    from petclick.core.errors import InputError
    from petclick.inference.bundle import BundleInferer
    from petclick.runtime.checkpoint import find_checkpoints
    from petclick.inference.predictor import EnsemblePredictor, load_model_predictor
    from petclick.io.clickfile import read_clicks
    from petclick.io.images import load_case

    work, _ = autorunner
    entry = _testing_case(tiny_cohort)
    assert main(["ensemble", "--work-dir", str(work), "--output-dir", str(tmp_path / "w")]) == 0
    out = nib.load(next((tmp_path / "w").rglob(Path(entry["image"]).name.replace(".nii.gz", "_ensemble.nii.gz"))))
    ref = np.mean([BundleInferer(_configs(work / f"swinunetr_{f}")).infer(entry).numpy()[0] for f in (0, 1)], axis=0)
    sure = np.abs(ref - 0.5) > 1e-4
    np.testing.assert_array_equal(np.asarray(out.dataobj)[sure], (ref >= 0.5)[sure])

    checkpoints = find_checkpoints(work)
    from_work_dir = load_model_predictor(work)  # AutoRunner's copy of input.yaml holds ensemble_weights
    assert from_work_dir.algo_weights == {"dints": 0.0, "swinunetr": 1.0}
    assert from_work_dir.checkpoints == [c for c in checkpoints if "swinunetr" in str(c)]
    weighted = EnsemblePredictor(checkpoints, algo_weights={"dints": 3})
    assert sorted(weighted.algos) == ["dints", "swinunetr"] and len(weighted.checkpoints) == 4
    assert [c.parts[-4] for c in weighted.checkpoints] == ["dints_0", "swinunetr_0", "dints_1", "swinunetr_1"]
    case = load_case(entry["image"], entry["pet"])
    clicks = read_clicks(entry["clicks"], shape=case.shape).first(3)
    per_algo = {a: EnsemblePredictor([c for c in checkpoints if c.parts[-4].startswith(a)]).predict(case, clicks)
                for a in ("dints", "swinunetr")}
    np.testing.assert_allclose(weighted.predict(case, clicks), 0.75 * per_algo["dints"] + 0.25 * per_algo["swinunetr"],
                               atol=1e-5)
    for bad, problem in (({"dints": -1}, ">= 0"), ({"dints": "x"}, "number"), (["dints"], "mapping")):
        with pytest.raises(InputError, match=problem):
            check_algo_weights(bad)
    with pytest.raises(InputError, match="weight 0"):
        EnsemblePredictor(checkpoints, algo_weights={"dints": 0, "swinunetr": 0})
