"""Fewer checkpoints chosen on validation cases (petclick/inference/subset.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from petclick.core.errors import InputError
from petclick.inference.predictor import EnsemblePredictor
from petclick.inference.subset import (SUPPORT, checkpoint_probabilities, choose_subset, prefix_report, read_subset,
                                       write_subset)
from petclick.io.images import CaseVolumes, Volume
from petclick.networks.factory import build_network
from petclick.phantoms import generate_case
from petclick.runtime.checkpoint import save_checkpoint

KWARGS = {"init_filters": 4, "blocks_down": [1, 1], "dsdepth": 1}
ROI = [16, 16, 16]


def _models(root, shifts):
    """Tiny checkpoints of one network whose output bias is shifted by `shifts`: the ensemble mean
    lies between them, so the best single one is the one nearest the middle."""
    torch.manual_seed(0)
    net = build_network("segresnet", 4, 1, **KWARGS).eval()
    paths = []
    for n, shift in enumerate(shifts):
        state = {k: v.clone() for k, v in net.state_dict().items()}
        bias = [k for k in state if k.endswith("head.bias")][0]
        state[bias] += shift
        paths.append(save_checkpoint(root / f"r{n}" / "model.pt", {
            "state_dict": state, "network": {"name": "segresnet", "kwargs": KWARGS}, "in_channels": 4,
            "out_channels": 1, "preprocess": {"roi": ROI, "crop_body": False, "encoding": {"encoding": "edt",
                                                                                         "channels": "two"}},
            "infer": {"roi": ROI, "overlap": 0.25, "sw_batch_size": 2}}))
    return paths


def test_greedy_subset_agrees_with_the_ensemble_and_round_trips(tmp_path):
    paths = _models(tmp_path / "m", [-6.0, 0.0, 6.0])
    predictor = EnsemblePredictor(paths)
    ph = generate_case("fdg_subset_01", 5, shape=(24, 20, 28), tracer="fdg")
    case = CaseVolumes(Volume(ph.ct, ph.affine), Volume(ph.pet, ph.affine))
    chosen = choose_subset(predictor, [(case, ph.clicks)], 2)
    assert len(chosen) == 2 and chosen[0] == predictor.checkpoints[1]   # the middle one alone is the mean's mask
    f = write_subset(tmp_path / "subset.json", chosen)
    assert json.loads(f.read_text())["checkpoints"][0] == "m/r1/model.pt"       # relative below the file
    assert read_subset(f) == [tmp_path / "m" / "r1" / "model.pt", chosen[1]]
    with pytest.raises(InputError, match="k must lie"):
        choose_subset(predictor, [(case, ph.clicks)], 4)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a checkpoint subset file"):
        read_subset(tmp_path / "bad.json")
    (tmp_path / "gone.json").write_text(json.dumps({"checkpoints": ["nope/model.pt"]}))
    with pytest.raises(InputError, match="not found"):
        read_subset(tmp_path / "gone.json")


@pytest.mark.parametrize("criterion", ["mask", "worst-mask", "prob"])
def test_subset_by_fidelity_over_the_protocol_steps(tmp_path, criterion):
    """steps `protocol`: every official step's exact answer per checkpoint (their mean is the
    ensemble's own answer); each criterion picks the middle checkpoint first; the prefix report
    gives the whole set's agreement as 1 and its label gaps as 0."""
    paths = _models(tmp_path / "m", [-6.0, 0.0, 6.0])
    predictor = EnsemblePredictor(paths)
    ph = generate_case("fdg_subset_01", 5, shape=(24, 20, 28), tracer="fdg")
    case = CaseVolumes(Volume(ph.ct, ph.affine), Volume(ph.pet, ph.affine), label=Volume(ph.label, ph.affine))
    data = checkpoint_probabilities(predictor, [(case, ph.clicks)], "protocol")
    assert [st for _, st in data.states] == list(range(11))
    for s in (0, 4, 10):                                  # the kept voxels hold the ensemble's answer
        want = predictor.predict(case, ph.clicks.first(s))
        top = np.max([predictor.predict_with([p], (), case, ph.clicks.first(s)) for p in paths], axis=0)
        assert np.allclose(data.full(s), want[top >= SUPPORT], atol=1e-5)
    chosen = choose_subset(predictor, [(case, ph.clicks)], 2, criterion=criterion, steps="protocol", data=data)
    assert chosen[0] == predictor.checkpoints[1]
    rows = prefix_report(data, chosen + [c for c in paths if c not in chosen])
    assert [r["k"] for r in rows] == [1, 2, 3]
    assert rows[-1]["mask_dice_mean"] == rows[-1]["mask_dice_worst"] == 1.0 and rows[-1]["mean_abs_dp"] < 1e-6
    assert rows[-1]["label_dice_step_gap"] == 0.0 and rows[0]["mean_abs_dp"] > 0
    with pytest.raises(InputError, match="unknown criterion"):
        choose_subset(predictor, [(case, ph.clicks)], 1, criterion="label")
