"""data.pet_scale: the log SUV scaling of the network input (petclick.runtime.petscale)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from petclick.core.errors import InputError
from petclick.runtime.petscale import LogScaleIntensity, LogScaleIntensityd
from petclick.runtime.preprocess import preprocess_config, preprocess_transforms


def test_log_scale_values_range_and_monotony():
    t = LogScaleIntensity(0.0, 50.0)
    x = torch.tensor([-3.0, 0.0, 2.5, 10.0, 50.0, 80.0])
    y = t(x)
    assert y[0] == 0 and y[1] == 0 and y[4] == 1 and y[5] == 1
    assert math.isclose(float(y[2]), math.log1p(2.5) / math.log1p(50.0), rel_tol=1e-6)
    assert torch.all(torch.diff(y[1:5]) > 0)
    with pytest.raises(ValueError):
        LogScaleIntensity(5.0, 5.0)


def test_dict_version_keeps_the_affine_and_the_pipeline_uses_it():
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    pet = MetaTensor(torch.full((1, 4, 4, 4), 20.0), affine=torch.as_tensor(affine))
    out = LogScaleIntensityd(keys="pet", lo=0.0, hi=50.0)({"pet": pet})["pet"]
    assert isinstance(out, MetaTensor) and np.allclose(np.asarray(out.affine), affine)
    names = [type(t).__name__ for t in preprocess_transforms({"pet_scale": "log", "pet_clip": [0, 50]})]
    assert "LogScaleIntensityd" in names
    names = [type(t).__name__ for t in preprocess_transforms({})]
    assert "LogScaleIntensityd" not in names


def test_pet_scale_defaults_to_linear_and_rejects_unknown_names():
    assert preprocess_config({})["pet_scale"] == "linear"          # checkpoints written before the key
    assert preprocess_config({"pet_scale": " LOG "})["pet_scale"] == "log"
    with pytest.raises(InputError, match="pet_scale"):
        preprocess_config({"pet_scale": "sqrt"})
