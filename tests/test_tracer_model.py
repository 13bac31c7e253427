"""The learned tracer classifier: its MIP input, the checkpoint round trip, training by
`petclick train-tracer`, and `predict` / `gc` using it (else the MIP rule) where the tracer is unknown."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from petclick.cli import main
from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks
from petclick.io.images import save_volume
from petclick.phantoms import generate_case
from petclick.runtime.tracer_model import TRACERS, TracerClassifier, mip_input
from petclick.training.tracer import tracer_cases

SHAPE = (32, 28, 40)


@pytest.fixture(scope="module")
def fdg():
    return generate_case("fdg_tm_01", 5, shape=SHAPE, tracer="fdg", clicks=False)


def always(tracer: str) -> TracerClassifier:
    """A classifier whose last layer answers `tracer` for every input (disagrees with the rule on purpose)."""
    torch.manual_seed(0)
    c = TracerClassifier()
    with torch.no_grad():
        c.model.fc.weight.zero_()
        c.model.fc.bias.copy_(torch.tensor([5.0, -5.0] if tracer == "fdg" else [-5.0, 5.0]))
    return c


def test_mip_input_is_orientation_free(fdg):
    x = mip_input(fdg.pet, fdg.affine, (32, 48))
    assert x.shape == (2, 32, 48) and x.dtype == np.float32 and np.isfinite(x).all() and x.max() > 1.0
    flipped = fdg.affine.copy()                       # the same body stored head-down
    flipped[:, 2] *= -1
    flipped[:3, 3] = fdg.affine[:3, :3] @ [0, 0, SHAPE[2] - 1] + fdg.affine[:3, 3]
    np.testing.assert_allclose(mip_input(fdg.pet[:, :, ::-1], flipped, (32, 48)), x, atol=1e-6)
    # the coronal view's top rows hold the FDG brain: hotter than the body below
    assert x[0, :, -8:].max() > x[0, :, : x.shape[2] // 2].mean() + 1.0


@pytest.mark.parametrize("head_low", [False, True])
def test_head_cuts_remove_the_head_end_and_keep_positions(fdg, head_low):
    from petclick.runtime.tracer_model import without_head

    pet, aff = fdg.pet, fdg.affine
    if head_low:                                      # stored head-down: the head is at k = 0
        aff = aff.copy()
        aff[:, 2] *= -1
        aff[:3, 3] = fdg.affine[:3, :3] @ [0, 0, SHAPE[2] - 1] + fdg.affine[:3, 3]
        pet = pet[:, :, ::-1]
    cut, cut_aff = without_head(pet, aff, 0.25)
    assert cut.shape == (SHAPE[0], SHAPE[1], SHAPE[2] - 10)
    kept = slice(10, None) if head_low else slice(0, SHAPE[2] - 10)
    np.testing.assert_array_equal(cut, pet[:, :, kept])
    np.testing.assert_allclose(cut_aff @ [1, 2, 0, 1], aff @ [1, 2, kept.start, 1])     # same world position
    top = max((aff @ [0, 0, k, 1])[2] for k in (0, SHAPE[2] - 1))                     # the head's z before
    assert max((cut_aff @ [0, 0, k, 1])[2] for k in (0, cut.shape[2] - 1)) < top


def test_checkpoint_round_trip_gives_the_same_predictions(tmp_path, fdg):
    torch.manual_seed(3)
    c = TracerClassifier("resnet", {"block_inplanes": [4, 8, 16, 32]}, size=(32, 64))
    c.metrics = {"accuracy": 0.5}
    path = c.save(tmp_path / "sub" / "tracer.pt")
    loaded = TracerClassifier.load(path)
    x = np.stack([mip_input(fdg.pet, fdg.affine, (32, 64)), mip_input(fdg.pet * 3.0, fdg.affine, (32, 64))])
    np.testing.assert_array_equal(loaded.probabilities(x), c.probabilities(x))
    assert loaded.config == c.config and loaded.metrics == {"accuracy": 0.5} and loaded.size == (32, 64)
    assert loaded.classify(fdg.pet, fdg.affine).tracer == c.classify(fdg.pet, fdg.affine).tracer
    assert [p.name for p in path.parent.iterdir()] == ["tracer.pt"]          # no temporary left behind


def test_foreign_or_missing_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="nope.pt: tracer classifier checkpoint not found"):
        TracerClassifier.load(tmp_path / "nope.pt")
    from petclick.runtime.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "model.pt", {"state_dict": {}, "network": {"name": "segresnet"}, "in_channels": 4,
                                            "preprocess": {}})
    with pytest.raises(InputError, match="model.pt: not a petclick tracer classifier"):
        TracerClassifier.load(tmp_path / "model.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="junk.pt: cannot read tracer classifier"):
        TracerClassifier.load(tmp_path / "junk.pt")


def test_training_on_the_tiny_cohort_runs_to_a_valid_checkpoint(tiny_cohort, tmp_path, capsys):
    out = tmp_path / "tracer.pt"
    assert main(["train-tracer", "--datalist", str(tiny_cohort), "--splits", "training", "testing", "--out", str(out),
                 "--epochs", "10", "--batch-size", "4", "--size", "32", "64"]) == 0
    assert "training accuracy" in capsys.readouterr().out
    c = TracerClassifier.load(out)
    cases = tracer_cases(tiny_cohort, ("training", "testing"))
    from petclick.training.tracer import accuracy, case_inputs
    x, y = case_inputs(c, cases)
    assert c.metrics["accuracy"] == pytest.approx(accuracy(c, x, y)["accuracy"])
    assert c.training["n_cases"] == {t: int(sum(cc.tracer == t for cc in cases)) for t in TRACERS}
    guesses = {cc.case_id: c.classify(*_pet(cc.pet)).tracer for cc in cases}
    assert set(guesses.values()) <= set(TRACERS)
    assert c.metrics["accuracy"] == pytest.approx(np.mean([guesses[cc.case_id] == cc.tracer for cc in cases]))
    losses = c.training["losses"]
    assert len(losses) == 10 and min(losses[-3:]) < losses[0]          # it learns


def _pet(path):
    from petclick.io.images import load_volume
    v = load_volume(path)
    return v.array, v.affine


def test_bad_case_ids_and_one_tracer_are_clear_errors(tmp_path, fdg, capsys):
    pet = save_volume(tmp_path / "x_0001.nii.gz", fdg.pet, fdg.affine)
    dl = tmp_path / "datalist.json"
    dl.write_text(json.dumps({"training": [{"case": "patient7", "image": str(pet), "pet": str(pet)}]}))
    assert main(["train-tracer", "--datalist", str(dl), "--out", str(tmp_path / "t.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "datalist.json: case id 'patient7' does not look like fdg_<patient>_<date>" in err and "\n" not in err
    dl.write_text(json.dumps({"training": [{"case": "fdg_a_1", "image": str(pet), "pet": str(pet)}]}))
    with pytest.raises(InputError, match="needs cases of both fdg and psma; training has \\['fdg'\\]"):
        tracer_cases(dl)
    assert main(["train-tracer", "--datalist", str(dl), "--out", str(tmp_path / "t.pt"),
                 "--network-kwargs", "[1]"]) == 2


def test_predict_and_gc_use_the_classifier_when_given_else_the_rule(tmp_path, fdg):
    from petclick.io.sitk import save_mha

    model = always("psma").save(tmp_path / "psma.pt")
    ct = save_volume(tmp_path / "case_0000.nii.gz", fdg.ct, fdg.affine)     # id "case": tracer unknown
    pet = save_volume(tmp_path / "case_0001.nii.gz", fdg.pet, fdg.affine)
    tracers = {}
    for name, flags in (("rule", []), ("learned", ["--tracer-model", str(model)]),
                        ("given", ["--tracer-model", str(model), "--tracer", "fdg"])):
        assert main(["predict", "--models", "suv-threshold", "--ct", str(ct), "--pet", str(pet), "--no-progress",
                     "--out", str(tmp_path / name), *flags]) == 0
        record = json.loads((tmp_path / name / "predict.json").read_text())
        tracers[name] = record["cases"][0]["tracer"]
    assert tracers == {"rule": "fdg", "learned": "psma", "given": "fdg"}
    assert record["runs"][next(iter(record["runs"]))]["tracer_model"] == str(model)

    inp = tmp_path / "input"
    save_mha(inp / "images" / "pet" / "p.mha", fdg.pet, affine=fdg.affine)
    save_mha(inp / "images" / "ct" / "c.mha", fdg.ct, affine=fdg.affine)
    for name, flags in (("gc_rule", []), ("gc_learned", ["--tracer-model", str(model)])):
        assert main(["gc", "--input", str(inp), "--output", str(tmp_path / name), "--models", "suv-threshold",
                     *flags]) == 0
        tracers[name] = json.loads((tmp_path / name / "petclick-input-report.json").read_text())["jobs"][0]["tracer"]
    assert tracers["gc_rule"] == "fdg" and tracers["gc_learned"] == "psma"
    assert main(["gc", "--input", str(inp), "--output", str(tmp_path / "x"), "--models", "suv-threshold",
                 "--tracer-model", str(tmp_path / "missing.pt")]) == 2


def test_the_classifier_drives_tracer_specific_postprocessing(fdg):
    """suv_filter keeps components by the tracer's SUV level: the classifier's tracer is the one used."""
    from petclick.io.images import CaseVolumes, Volume
    from petclick.postprocess import make_config, postprocess, resolve_tracer

    case = CaseVolumes(Volume(fdg.ct, fdg.affine), Volume(fdg.pet, fdg.affine))
    assert resolve_tracer(None, case) == "fdg" and resolve_tracer(None, case, always("psma")) == "psma"
    assert resolve_tracer("fdg", case, always("psma")) == "fdg"
    cfg = make_config({"suv_filter": {"enabled": True, "suv_min": {"fdg": 0.0, "psma": 1e9}}})
    prob = (fdg.pet >= 2.5).astype(np.float32)
    assert postprocess(prob, case, Clicks(), resolve_tracer(None, case), cfg).sum() == (prob > 0).sum()
    assert postprocess(prob, case, Clicks(), resolve_tracer(None, case, always("psma")), cfg).sum() == 0
