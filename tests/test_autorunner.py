"""MONAI AutoRunner end to end on 8 tiny phantoms: analysis, 2 folds x 2 repeats of the segresnet
template (demo preset, one short epoch), ensemble predictions of the testing split on the PET grid.
The slowest test of the suite (about a minute on 2 cores)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

from petclick.core.yamlio import write_yaml

REPO = Path(__file__).resolve().parent.parent


def test_autorunner_two_folds_two_repeats(tiny_cohort, tmp_path, monkeypatch):
    from monai.apps.auto3dseg import AutoRunner

    from petclick.inference.predictor import load_model_predictor
    from petclick.io.datalist import load_datalist

    work = tmp_path / "work_dir"
    cfg = {"modality": "CT", "extra_modalities": {"pet": "pet"}, "datalist": str(tiny_cohort),
           "dataroot": str(tiny_cohort.parent), "templates_path_or_url": str(REPO / "petclick" / "bundles"), "algos": ["segresnet"],
           "work_dir": str(work), "num_fold": 2, "sigmoid": True, "preset": "demo", "num_repeats": 2,
           "overrides": {"training": {"num_epochs": 1, "num_iterations_per_epoch": 2}}}
    write_yaml(tmp_path / "input.yaml", cfg)
    monkeypatch.setenv("CMD_PREFIX", sys.executable)  # training subprocesses run this interpreter
    AutoRunner(input=str(tmp_path / "input.yaml")).run()

    checkpoints = sorted(work.rglob("model.pt"))
    assert [str(p.relative_to(work)) for p in checkpoints] == [
        f"segresnet_{f}/model/repeat{r}/model.pt" for f in (0, 1) for r in (0, 1)]
    for fold in (0, 1):
        progress = yaml.safe_load((work / f"segresnet_{fold}" / "model" / "progress.yaml").read_text())
        assert progress[-1]["repeats_done"] == 2 and 0.0 <= progress[-1]["best_avg_dice_score"] <= 1.0
        assert (work / f"segresnet_{fold}" / "model" / "train.log").stat().st_size > 0
    assert len(load_model_predictor(work).checkpoints) == 4

    testing = load_datalist(tiny_cohort)["testing"]
    outputs = sorted((work / "ensemble_output").rglob("*.nii.gz"))
    assert len(outputs) == len(testing) == 2
    for entry in testing:
        pet = nib.load(tiny_cohort.parent / entry["pet"])
        name = Path(entry["image"]).name.replace(".nii.gz", "_ensemble.nii.gz")
        out = next(p for p in outputs if p.name == name)
        mask = nib.load(out)
        assert mask.shape == pet.shape and np.allclose(mask.affine, pet.affine, atol=1e-5)
        assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
