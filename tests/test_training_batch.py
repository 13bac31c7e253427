"""The batch stage (data.batch_transforms): clicks packed through collate, intensity augmentation and
encoding on the collated batch give the same clicks and network input as the per-patch path for
the same seed, and the torch-drawn noise has MONAI's distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import list_data_collate
from monai.transforms import RandGaussianNoise

from petclick.clicks.packing import pack_clicks, unpack_clicks
from petclick.config.bundle import load_bundle_config


def test_packed_clicks_round_trip_and_never_drop_clicks():
    clicks = {"tumor": np.array([[1.0, 2.0, 3.0], [4.5, 5.0, 6.0]]), "background": np.zeros((0, 3))}
    packed = pack_clicks(clicks, 10)
    assert packed.shape == (2, 10, 3) and np.isnan(packed[0, 2:]).all() and np.isnan(packed[1]).all()
    for arr in (packed, torch.as_tensor(packed)):
        back = unpack_clicks(arr)
        np.testing.assert_array_equal(np.asarray(back["tumor"]), clicks["tumor"])
        assert np.asarray(back["background"]).shape == (0, 3)
    with pytest.raises(ValueError, match="do not fit"):
        pack_clicks({"tumor": np.zeros((11, 3))}, 10)


def _datasets(make_bundle, tmp_path, prob: float):
    from petclick.training.data import fold_files, train_dataset

    out = {}
    for batch in (False, True):
        bundle = make_bundle(tmp_path / f"batch{batch}", overrides={
            "data": {"batch_transforms": batch}, "augment": {"prob": prob}})
        cfg = load_bundle_config(str(bundle / "configs" / "hyper_parameters.yaml"))
        files = fold_files(cfg["datalist"], cfg["dataroot"], 0)
        out[batch] = (cfg, train_dataset(cfg, files.train, cfg["data"]["roi"]))
    return out


def test_batch_stage_gives_the_per_patch_input_for_the_same_seed(make_bundle, tmp_path):
    from petclick.training.data import batch_stage

    ds = _datasets(make_bundle, tmp_path, prob=0.0)  # no intensity change: the inputs must be equal
    cfg, batch_ds = ds[True]
    stage = batch_stage(cfg)
    assert stage is not None and batch_stage(ds[False][0]) is None
    stage.set_random_state(0)
    n_clicks = 0
    for index in range(len(batch_ds)):
        for _, d in ds.items():
            d[1].transform.set_random_state(seed=100 + index)
        per_patch = list_data_collate([ds[False][1][index]])
        packed = list_data_collate([batch_ds[index]])
        assert packed["image"].shape[1] == 2 and packed["clicks"].shape[1:] == (2, 10, 3)
        n_clicks += int((~torch.isnan(packed["clicks"][..., 0])).sum())
        out = stage(packed, "cpu")
        assert "clicks" not in out and out["image"].shape == per_patch["image"].shape
        torch.testing.assert_close(out["image"], per_patch["image"], rtol=0, atol=1e-6)
        torch.testing.assert_close(out["label"], per_patch["label"], rtol=0, atol=0)
    assert n_clicks > 0  # the comparison covered clicks, not only empty channels


def test_batch_stage_augments_each_sample_and_is_seeded(make_bundle, tmp_path):
    from petclick.training.data import batch_stage

    cfg, batch_ds = _datasets(make_bundle, tmp_path, prob=1.0)[True]
    batch = list_data_collate([batch_ds[0], batch_ds[1]])
    runs = [batch_stage(cfg).set_random_state(s)(batch, "cpu")["image"] for s in (3, 3, 4)]
    torch.testing.assert_close(runs[0], runs[1])            # the same seed, the same augmentation
    assert not torch.allclose(runs[0], runs[2])              # another seed, another one
    assert not torch.allclose(runs[0][:, :2], batch["image"])  # with probability 1 the images change
    assert runs[0].shape[1] == 4 and torch.isfinite(runs[0]).all()


def test_torch_noise_has_monai_noise_distribution():
    from petclick.training.batch import RandGaussianNoiseTorch

    img = torch.zeros(1, 24, 24, 24)
    draws = {}
    for name, cls in (("monai", RandGaussianNoise), ("torch", RandGaussianNoiseTorch)):
        t = cls(prob=0.5, std=0.2)
        t.set_random_state(7)
        outs = [torch.as_tensor(t(img)) for _ in range(400)]
        stds = np.array([float(o.std()) for o in outs])
        draws[name] = {"applied": float(np.mean(stds > 0)), "std": stds[stds > 0], "mean": float(torch.stack(outs).mean())}
    for d in draws.values():
        assert 0.42 < d["applied"] < 0.58 and abs(d["mean"]) < 1e-3
        # std ~ U(0, 0.2): mean 0.1, standard deviation 0.2 / sqrt(12)
        assert abs(d["std"].mean() - 0.1) < 0.01 and abs(d["std"].std() - 0.2 / np.sqrt(12)) < 0.01
        assert d["std"].max() < 0.21
