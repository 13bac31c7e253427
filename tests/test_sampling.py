"""Training patch samplers (`data.sampler`, petclick.training.sampling): the uptake sampler's classes,
its compact indices, seeded patches, centres of the class asked for, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from petclick.config.bundle import load_bundle_config
from petclick.core.errors import InputError
from petclick.training.sampling import SAMPLERS, UptakeClassIndices, sampler


def test_class_indices_are_the_lesion_the_hot_organs_and_a_body_draw():
    image = np.zeros((2, 20, 20, 20), np.float32)
    image[0, 2:18, 2:18, 2:18] = 0.5            # CT: the body
    image[1, 2:18, 2:18, 2:18] = 0.1            # PET: background uptake
    image[1, 4:6, 4:6, 4:6] = 0.9               # a hot organ
    label = np.zeros((1, 20, 20, 20), np.uint8)
    label[0, 12:15, 12:15, 12:15] = 1
    image[1, 12:15, 12:15, 12:15] = 0.7
    lesion, hot, body = UptakeClassIndices(body_samples=100, seed=3)(image, label, threshold=0.5)
    assert lesion.dtype == hot.dtype == body.dtype == np.int32
    np.testing.assert_array_equal(lesion, np.flatnonzero(label[0].ravel()))
    np.testing.assert_array_equal(hot, np.flatnonzero((image[1] > 0.5).ravel() & (label[0].ravel() == 0)))
    assert body.size == 100 and np.all(image[0].ravel()[body] > 0)
    again = UptakeClassIndices(body_samples=100, seed=3)(image, label, threshold=0.5)[2]
    np.testing.assert_array_equal(body, again)   # the cached draw is deterministic
    empty = UptakeClassIndices()(image, np.zeros_like(label), threshold=0.5)[0]
    assert empty.size == 0                          # a case without lesions: no lesion centres


def _dataset(make_bundle, tmp_path, ratios):
    from petclick.training.data import fold_files, train_dataset

    bundle = make_bundle(tmp_path, overrides={"data": {"sampler": "uptake", "sampler_ratios": ratios},
                                              "augment": {"prob": 0.0, "flip_prob": 0.0}})
    cfg = load_bundle_config(str(bundle / "configs" / "hyper_parameters.yaml"))
    files = fold_files(cfg["datalist"], cfg["dataroot"], 0)
    return cfg, train_dataset(cfg, files.train, cfg["data"]["roi"])


def test_uptake_patches_are_seeded_and_centred_on_the_class_asked_for(make_bundle, tmp_path):
    cfg, ds = _dataset(make_bundle, tmp_path / "lesion", [1.0, 0.0, 0.0])
    roi = cfg["data"]["roi"]
    with_lesion = [i for i in range(len(ds)) if np.any(np.asarray(ds._cache[i]["label"]) > 0)]
    assert with_lesion
    for i in with_lesion:
        ds.transform.set_random_state(seed=5)
        first = ds[i]
        ds.transform.set_random_state(seed=5)
        second = ds[i]
        for a, b in zip(first, second):
            torch.testing.assert_close(a["image"], b["image"], rtol=0, atol=0)
        for patch in first:
            assert list(patch["image"].shape[1:]) == list(roi) and patch["label"].sum() > 0  # a lesion in every patch
    _, hot_ds = _dataset(make_bundle, tmp_path / "hot", [0.0, 1.0, 0.0])
    for i in range(len(hot_ds)):
        threshold = hot_ds._cache[i]["pet_threshold"]
        hot_ds.transform.set_random_state(seed=7)
        for patch in hot_ds[i]:   # every patch holds uptake above the case's background threshold
            assert float(patch["image"][1].max()) >= threshold - 1e-6


def test_unknown_sampler_and_bad_ratios_are_input_errors():
    assert set(SAMPLERS.names()) == {"posneg", "uptake"}
    with pytest.raises(InputError, match="data.sampler.*unknown training sampler 'random'.*posneg, uptake"):
        sampler({"sampler": "random"})
    crop = sampler({"sampler": "uptake"}).crop
    for bad in ([1, 1], [1, -1, 1], [0, 0, 0], ["a", 1, 1]):
        with pytest.raises(InputError, match="data.sampler_ratios"):
            crop({"sampler_ratios": bad, "num_crops": 1}, ["image", "label"], [8, 8, 8])
