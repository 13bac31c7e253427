"""`petclick subset` and subset files as models (petclick/commands/subset.py, find_checkpoints)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from petclick.cli import main
from petclick.core.errors import InputError
from petclick.inference.predictor import EnsemblePredictor
from petclick.inference.predictors import get_predictor
from petclick.inference.subset import read_subset, read_subset_file, write_subset
from petclick.io.clickfile import write_clicks
from petclick.io.images import save_volume
from petclick.phantoms import generate_case
from petclick.runtime.checkpoint import find_checkpoints
from test_subset import _models


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    """Three tiny checkpoints and a datalist of one fold-0 phantom (CT, PET, label, clicks) and one fold-1."""
    root = tmp_path_factory.mktemp("subset_cmd")
    paths = _models(root / "models", [-6.0, 0.0, 6.0])
    entries = []
    for fold, seed in ((0, 5), (1, 6)):
        ph = generate_case(f"fdg_sub{seed}_01", seed, shape=(24, 20, 28), tracer="fdg")
        stem = root / "data" / ph.case_id
        save_volume(f"{stem}_0000.nii.gz", ph.ct, ph.affine)
        save_volume(f"{stem}_0001.nii.gz", ph.pet, ph.affine)
        save_volume(f"{stem}.nii.gz", ph.label.astype(np.uint8), ph.affine)
        write_clicks(f"{stem}_clicks.json", ph.clicks)
        entries.append({"image": f"data/{ph.case_id}_0000.nii.gz", "pet": f"data/{ph.case_id}_0001.nii.gz",
                        "label": f"data/{ph.case_id}.nii.gz", "clicks": f"data/{ph.case_id}_clicks.json", "fold": fold})
    (root / "datalist.json").write_text(json.dumps({"training": entries}))
    return root, paths


def test_command_writes_a_subset_that_reads_back_and_loads_as_a_predictor(ensemble, tmp_path, capsys):
    root, paths = ensemble
    out = tmp_path / "subset.json"
    rc = main(["subset", "--predictor", str(root / "models"), "--datalist", str(root / "datalist.json"),
               "--k", "2", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    chosen = read_subset(out)
    assert len(chosen) == 2 and chosen[0].resolve() == paths[1].resolve()     # the middle one first
    meta = read_subset_file(out)
    assert meta["k"] == 2 and meta["criterion"] == "mask" and meta["steps"] == "ends"
    assert meta["cases"] == ["fdg_sub5_01"] and meta["fold"] == 0            # fold 0's validation case only
    text = capsys.readouterr().out
    assert "mask Dice mean" in text and "label Dice step gap" in text and str(out) in text
    predictor = get_predictor(str(out))                                      # as --predictor / --models take it
    assert isinstance(predictor, EnsemblePredictor)
    assert list(predictor.checkpoints) == [c.resolve() for c in chosen]


def test_subset_file_expands_in_checkpoint_discovery(ensemble, tmp_path):
    root, paths = ensemble
    f = write_subset(tmp_path / "s.json", [paths[2], paths[0]], {"algo_weights": {"segresnet": 2.0}})
    assert find_checkpoints(f) == [paths[2].resolve(), paths[0].resolve()]   # the file's order kept
    assert find_checkpoints([f, paths[0]]) == [paths[2].resolve(), paths[0].resolve()]
    assert get_predictor(f).algo_weights == {"segresnet": 2.0}              # the weights it was chosen with


@pytest.mark.parametrize("text", ["{not json", "{}", '{"checkpoints": 5}', '{"checkpoints": []}', "[1, 2]"])
def test_a_json_that_is_no_subset_is_refused_in_one_line(ensemble, tmp_path, capsys, text):
    root, _ = ensemble
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(InputError, match="not a checkpoint subset file"):
        find_checkpoints(bad)
    rc = main(["interactive", "--predictor", str(bad), "--datalist", str(root / "datalist.json"),
               "--split", "training", "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and str(bad) in err and "not a checkpoint subset file" in err


def test_command_refuses_bad_arguments_in_one_line(ensemble, tmp_path, capsys):
    root, _ = ensemble
    base = ["subset", "--predictor", str(root / "models"), "--datalist", str(root / "datalist.json"), "--device", "cpu"]
    for extra, words in ((["--k", "4", "--out", str(tmp_path / "s.json")], "must lie in 1..3"),
                         (["--k", "1", "--out", str(tmp_path / "s.txt")], "must end in .json"),
                         (["--k", "1", "--split", "testing", "--out", str(tmp_path / "s.json")], "no split 'testing'"),
                         (["--k", "1", "--fold", "3", "--out", str(tmp_path / "s.json")], "no case in fold 3")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err
    assert not (tmp_path / "s.json").exists()


def test_fast_checkpoints_take_a_subset_file(ensemble, tmp_path):
    import argparse

    from petclick.commands.predict import add_first_args, fast_checkpoints

    _, paths = ensemble
    f = write_subset(tmp_path / "fast.json", [paths[1]])
    p = argparse.ArgumentParser()
    add_first_args(p, subset_files=True)
    assert fast_checkpoints(p.parse_args(["--fast-checkpoints", "3"])) == 3
    assert fast_checkpoints(p.parse_args(["--fast-checkpoints", str(f)])) == [paths[1].resolve()]
    (tmp_path / "no.json").write_text("{}")
    with pytest.raises(InputError, match="no.json"):
        fast_checkpoints(p.parse_args(["--fast-checkpoints", str(tmp_path / "no.json")]))
