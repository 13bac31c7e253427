"""Training: presets and overrides, fill_template_config on a real data analysis, a short training
that lowers the loss, resume after an interruption, self-describing checkpoints, the streamed
ensemble and InferClass output on the PET grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from petclick.core.errors import InputError
from petclick.core.yamlio import apply_overrides, read_yaml, write_yaml

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "petclick" / "bundles" / "segresnet"


# ---------------------------------------------------------------------------- config layers
def test_presets_and_overrides_merge_in_order():
    from petclick.auto3dseg.algo import merged_config

    template = read_yaml(TEMPLATE / "configs" / "hyper_parameters.yaml")
    auto = merged_config(template, {"preset": "autopet"}, "segresnet")
    assert auto["network"]["kwargs"]["init_filters"] == 32
    assert list(auto["network"]["kwargs"]["blocks_down"]) == [1, 2, 2, 4, 4]
    assert auto["data"]["roi"] == [192, 192, 384] and auto["infer"]["overlap"] == 0.625
    assert auto["training"]["lr"] == 2e-4 and auto["training"]["warmup_epochs"] == 3
    assert auto["num_repeats"] == 4
    user = {"preset": "demo", "num_repeats": 2, "clicks": {"encoding": {"encoding": "gaussian", "sigma": 2.0}},
            "overrides": {"training#lr": 0.01, "data": {"num_crops": 3}},
            "algo_overrides": {"segresnet": {"network": {"kwargs": {"init_filters": 4}}}, "dints": {"data": {"num_crops": 9}}}}
    demo = merged_config(template, user, "segresnet")
    assert demo["network"]["kwargs"]["init_filters"] == 4 and demo["network"]["kwargs"]["dsdepth"] == 2
    assert demo["training"]["lr"] == 0.01 and demo["data"]["num_crops"] == 3
    assert demo["clicks"]["encoding"] == {"encoding": "gaussian", "channels": "two", "sigma": 2.0}
    assert demo["clicks"]["curriculum"]["count"] == "log" and demo["num_repeats"] == 2
    with pytest.raises(InputError, match="unknown preset"):
        merged_config(template, {"preset": "huge"}, "segresnet")
    with pytest.raises(InputError, match="num_repeats"):
        merged_config(template, {"num_repeats": 0}, "segresnet")
    assert apply_overrides({"a": {"b": 1, "c": 2}}, {"a#b": 5}) == {"a": {"b": 5, "c": 2}}


def test_fill_template_config_on_real_datastats(tiny_cohort, tiny_datastats, make_bundle, tmp_path):
    from monai.bundle import ConfigParser

    bundle = make_bundle(tmp_path, fold=1, num_repeats=3,
                         algo_overrides={"segresnet": {"data": {"roi": [64, 64, 64]}}})
    cfg = read_yaml(bundle / "configs" / "hyper_parameters.yaml")
    assert cfg["fold"] == 1 and cfg["num_repeats"] == 3 and cfg["preset"] == "demo"
    assert cfg["data"]["spacing"] is None  # every phantom shares one spacing: no resampling
    # ROI asked 64^3, shrunk to the 48x48x64 data and kept divisible by the network's 4
    assert cfg["data"]["roi"] == [48, 48, 64]
    assert all(r % 4 == 0 for r in cfg["infer"]["roi"])
    assert cfg["training"]["num_epochs"] == 1 and "presets" not in cfg
    assert Path(cfg["ckpt_path"]) == bundle.resolve() / "model"
    assert cfg["pet_stats"]["n_cases"] == 6 and cfg["pet_stats"]["lesion_suv"][1] > cfg["pet_stats"]["body_suv"][1]
    assert (tiny_datastats.parent / "datastats_pet.yaml").is_file()
    # what Auto3DSeg's BundleAlgo.get_score parses
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "hyper_parameters.yaml"))
    assert parser.get_parsed_content("ckpt_path") == cfg["ckpt_path"]
    assert read_yaml(bundle / "configs" / "inference.yaml")["bundle_root"] == str(bundle.resolve())


# ---------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(make_bundle, tmp_path_factory):
    """A bundle trained 4 epochs (2 iterations each, validation at the end) on fold 0."""
    from petclick.config.bundle import load_bundle_config
    from petclick.training.data import fold_files, train_dataset, val_dataset
    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer

    root = tmp_path_factory.mktemp("trained")
    bundle = make_bundle(root, overrides={
        "training": {"num_epochs": 4, "num_iterations_per_epoch": 3, "val_every": 4, "lr": 0.01}})
    cfg = load_bundle_config([bundle / "configs" / "hyper_parameters.yaml", bundle / "configs" / "inference.yaml"])
    files = fold_files(cfg["datalist"], cfg["dataroot"], 0)
    train_ds, val_ds = train_dataset(cfg, files.train, cfg["data"]["roi"]), val_dataset(cfg, files.val)
    trainer = RepeatTrainer(cfg, 0, Path(cfg["ckpt_path"]) / "repeat0", DistContext(), train_ds, val_ds)
    # the demo preset starts every output head's bias at logit(output_prior)
    prior = cfg["network"]["output_prior"]
    assert 0 < prior < 0.05
    for head in ("up_layers.0.head", "up_layers.1.head"):
        assert torch.allclose(trainer.model.get_submodule(head).bias, torch.tensor(np.log(prior / (1 - prior))).float())
    # one fixed training batch, its loss before and after: epoch means are not comparable, since a
    # lesion-free batch costs cross-entropy only (training.empty_dice: ignore)
    from petclick.training.data import train_loader

    batch = trainer.batch_stage(next(iter(train_loader(cfg, train_ds, 123))))

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(trainer.compute_loss(trainer.net(batch["image"]), batch["label"], batch))

    before = fixed_loss()
    trainer.run()
    return {"bundle": bundle, "cfg": cfg, "losses": trainer.losses, "data": (train_ds, val_ds),
            "fixed_batch_loss": (before, fixed_loss())}


def test_short_training_lowers_the_loss_and_writes_progress(trained):
    losses = trained["losses"]
    assert len(losses) == 4 and all(np.isfinite(losses))
    before, after = trained["fixed_batch_loss"]
    assert after < before
    repeat = Path(trained["cfg"]["ckpt_path"]) / "repeat0"
    progress = yaml.safe_load((repeat / "progress.yaml").read_text())
    assert progress[-1]["epoch"] == 4 and 0.0 <= progress[-1]["best_avg_dice_score"] <= 1.0
    assert set(progress[-1]["per_step_dice"]) == {"0", "5", "10"}
    assert any((repeat / "tb").iterdir())


def test_checkpoint_is_self_describing(trained):
    from petclick.runtime.checkpoint import build_model, find_checkpoints, read_checkpoint

    paths = find_checkpoints(trained["bundle"])
    assert [p.name for p in paths] == ["model.pt"]  # last.pt is resume state, not an inference model
    ckpt = read_checkpoint(paths[0])
    assert ckpt["network"]["name"] == "segresnet" and ckpt["in_channels"] == 4
    assert ckpt["preprocess"]["ct_window"] == [-250.0, 250.0] and ckpt["preprocess"]["pet_clip"] == [0.0, 10.0]
    assert ckpt["preprocess"]["encoding"]["encoding"] == "edt" and ckpt["preprocess"]["roi"] == trained["cfg"]["data"]["roi"]
    model = build_model(ckpt)
    out = model(torch.zeros(1, 4, *ckpt["preprocess"]["roi"]))
    assert out.shape == (1, 1, *ckpt["preprocess"]["roi"])
    with pytest.raises(InputError, match="checkpoint"):
        read_checkpoint(trained["bundle"] / "configs" / "hyper_parameters.yaml")


def test_resume_after_an_interrupted_run(trained, tmp_path):
    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer

    cfg = dict(trained["cfg"])
    cfg["training"] = dict(cfg["training"], num_epochs=3, num_iterations_per_epoch=1, val_every=1)
    train_ds, val_ds = trained["data"]
    out = tmp_path / "repeat0"

    class Killed(RepeatTrainer):
        def _epoch(self, epoch):
            if epoch == 1:
                raise KeyboardInterrupt("killed mid-epoch")
            return super()._epoch(epoch)

    with pytest.raises(KeyboardInterrupt):
        Killed(cfg, 0, out, DistContext(), train_ds, val_ds).run()
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and not state["finished"]
    resumed = RepeatTrainer(cfg, 0, out, DistContext(), train_ds, val_ds)
    assert resumed.start_epoch == 1 and resumed.best == state["best_metric"]
    resumed.run()
    assert len(resumed.losses) == 2  # epochs 2 and 3 only
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and state["finished"]
    progress = yaml.safe_load((out / "progress.yaml").read_text())
    assert [e["epoch"] for e in progress] == [1, 2, 3]
    again = RepeatTrainer(cfg, 0, out, DistContext(), train_ds, val_ds)
    assert again.finished and again.run() == state["best_metric"] and again.losses == []


# ---------------------------------------------------------------------------- inference
def _testing_case(tiny_cohort: Path) -> dict:
    from petclick.io.datalist import load_datalist, resolve_entry

    return resolve_entry(load_datalist(tiny_cohort)["testing"][0], tiny_cohort.parent)


def test_inferclass_output_is_on_the_pet_grid(trained, tiny_cohort):
    import nibabel as nib

    from petclick.inference.bundle import BundleInferer

    bundle = trained["bundle"]
    entry = _testing_case(tiny_cohort)
    inferer = BundleInferer([str(p) for p in sorted((bundle / "configs").iterdir())], rank=0, image_save_func={})
    out = inferer.infer({"image": entry["image"], "pet": entry["pet"], "clicks": entry["clicks"]})
    pet = nib.load(entry["pet"])
    assert tuple(out.shape) == (1, *pet.shape)
    np.testing.assert_allclose(np.asarray(out.affine), pet.affine, atol=1e-5)
    assert out.meta["filename_or_obj"] == entry["image"]
    values = out.numpy()
    assert values.dtype == np.float32 and 0.0 <= values.min() and values.max() <= 1.0
    # a CT path alone: the PET is found beside it (_0000 -> _0001), and the cached predictor is reused
    again = BundleInferer([str(p) for p in sorted((bundle / "configs").iterdir())])
    assert again.predictor is inferer.predictor
    np.testing.assert_allclose(again.infer(entry["image"]).numpy(), inferer.infer(entry["image"]).numpy())


def test_ensemble_is_the_mean_of_its_checkpoints(trained, tiny_cohort, tmp_path):
    from petclick.inference.checkpoint_set import flip_combinations
    from petclick.inference.predictor import EnsemblePredictor, load_model_predictor
    from petclick.io.clickfile import read_clicks
    from petclick.io.images import load_case

    entry = _testing_case(tiny_cohort)
    case = load_case(entry["image"], entry["pet"], entry.get("label"))
    clicks = read_clicks(entry["clicks"]).first(3)
    ckpt = next(Path(trained["cfg"]["ckpt_path"]).rglob("model.pt"))
    state = torch.load(ckpt, weights_only=True)
    for name in state["state_dict"]:  # a second, different model: weights scaled
        if state["state_dict"][name].is_floating_point():
            state["state_dict"][name] = state["state_dict"][name] * 0.9
    other = tmp_path / "other" / "model.pt"
    other.parent.mkdir()
    torch.save(state, other)
    single = [EnsemblePredictor([p]).predict(case, clicks) for p in (ckpt, other)]
    both = load_model_predictor([ckpt, other.parent])
    assert len(both.checkpoints) == 2
    prob = both.predict(case, clicks)
    assert prob.shape == case.shape and prob.dtype == np.float32
    np.testing.assert_allclose(prob, (single[0] + single[1]) / 2, atol=1e-5)
    assert flip_combinations((0, 2)) == [(), (0,), (2,), (0, 2)]
    # mirror TTA changes the output of a network that is not mirror-symmetric: random weights keep
    # the probabilities away from saturation (the briefly trained model predicts ~0 almost everywhere)
    torch.manual_seed(0)
    for name in state["state_dict"]:
        if state["state_dict"][name].is_floating_point():
            state["state_dict"][name] = torch.randn_like(state["state_dict"][name]) * 0.2
    rand = tmp_path / "rand" / "model.pt"
    rand.parent.mkdir()
    torch.save(state, rand)
    plain = EnsemblePredictor([rand]).predict(case, clicks)
    mirrored = EnsemblePredictor([rand]).predict_with([rand], (0,), case, clicks)
    assert mirrored.shape == case.shape and np.abs(mirrored - plain).max() > 1e-3


def test_to_pet_grid_shift_and_resample():
    from petclick.runtime.grid import integer_shift, to_pet_grid

    pet_affine = np.diag([2.0, 2.0, 3.0, 1.0])
    pet_affine[:3, 3] = [10, -4, 7]
    crop = pet_affine.copy()
    crop[:3, 3] += np.array([2.0, 2.0, 3.0]) * [3, 1, 2]  # cropped 3, 1, 2 voxels from the start
    values = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(1, 4, 5, 6)
    assert list(integer_shift(crop, pet_affine)) == [-3, -1, -2]
    out = to_pet_grid(values, crop, pet_affine, (10, 8, 9))
    assert out.shape == (1, 10, 8, 9) and out.sum() == values.sum()
    assert torch.equal(out[0, 3:7, 1:6, 2:8], values[0]) and out[0, :3].abs().sum() == 0
    coarse = pet_affine.copy()
    coarse[:3, :3] *= 2  # a grid at twice the spacing: interpolated
    assert integer_shift(coarse, pet_affine) is None
    up = to_pet_grid(torch.ones(1, 4, 4, 4), coarse, pet_affine, (8, 8, 8))
    assert up.shape == (1, 8, 8, 8) and float(up[0, 2, 2, 2]) == pytest.approx(1.0)


def test_to_pet_grid_resamples_in_slabs_exactly_as_in_one_pass(monkeypatch):
    from petclick.runtime import grid

    pet_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    pet_affine[:3, 3] = [5, -3, 11]
    net = np.diag([2.0, 2.0, 3.0, 1.0])       # 3 mm slices in the network's space, cropped
    net[:3, 3] = pet_affine[:3, 3] + [4.0, 2.0, 7.0]
    values = torch.rand(1, 14, 12, 15, generator=torch.Generator().manual_seed(0))
    whole = grid.to_pet_grid(values, net, pet_affine, (20, 16, 24))
    monkeypatch.setattr(grid, "SLAB_VOXELS", 20 * 16 * 5)  # slabs of 5 slices, the last one of 4
    slabs = grid.to_pet_grid(values, net, pet_affine, (20, 16, 24))
    assert whole.abs().sum() > 0 and (whole == 0).any()     # interpolated inside, zeros outside the crop
    torch.testing.assert_close(slabs, whole, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- repeat modes
def _repeat_cfg(trained, mode: str, **training):
    cfg = dict(trained["cfg"])
    cfg["training"] = {**cfg["training"], "repeats": mode, "num_epochs": 3, "cycle_epochs": 2,
                       "num_iterations_per_epoch": 1, "val_every": 100, **training}
    return cfg


def _weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_repeat_mode_is_an_input_error():
    from petclick.training.repeats import REPEAT_MODES, repeat_epochs, repeat_mode

    assert set(REPEAT_MODES) == {"independent", "snapshot", "warmstart"}
    assert repeat_mode({}).name == "independent" and repeat_mode({"repeats": "Snapshot"}).name == "snapshot"
    with pytest.raises(InputError, match="unknown repeat mode 'cyclic'.*independent, snapshot, warmstart"):
        repeat_mode({"repeats": "cyclic"})
    snapshot = {"repeats": "snapshot", "num_epochs": 5, "cycle_epochs": 2}
    assert repeat_epochs(snapshot, 0) == 5 and repeat_epochs(snapshot, 3) == 2
    assert repeat_epochs({**snapshot, "repeats": "independent"}, 3) == 5   # independent repeats: num_epochs
    assert repeat_epochs({**snapshot, "cycle_epochs": None}, 3) == 5
    with pytest.raises(InputError, match="cycle_epochs"):
        repeat_epochs({**snapshot, "cycle_epochs": "many"}, 1)


def test_snapshot_repeats_continue_each_other_and_keep_their_cycle_ends(trained, tmp_path):
    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer

    cfg = _repeat_cfg(trained, "snapshot")
    train_ds, val_ds = trained["data"]
    with pytest.raises(InputError, match="starts from repeat 0, which has not finished"):
        RepeatTrainer(cfg, 1, tmp_path / "repeat1", DistContext(), train_ds, val_ds)
    first = RepeatTrainer(cfg, 0, tmp_path / "repeat0", DistContext(), train_ds, val_ds)
    assert first.epochs == 3
    first.run()
    second = RepeatTrainer(cfg, 1, tmp_path / "repeat1", DistContext(), train_ds, val_ds)
    assert second.epochs == 2 and second.start_epoch == 0
    assert _same(second.model.state_dict(), _weights(tmp_path / "repeat0" / "last.pt"))  # starts at repeat 0's end
    assert second.opt.state_dict()["state"]  # with the Adam moments of repeat 0
    assert second.opt.param_groups[0]["lr"] == pytest.approx(cfg["training"]["lr"])  # the learning rate restarts
    second.run()
    ends = [read_checkpoint_plain(tmp_path / f"repeat{r}" / "model.pt") for r in (0, 1)]
    assert [e["epoch"] for e in ends] == [3, 2] and [e["repeat_source"] for e in ends] == [None, 0]
    assert _same(ends[1]["state_dict"], _weights(tmp_path / "repeat1" / "last.pt"))  # the cycle's end is kept
    assert not _same(ends[0]["state_dict"], ends[1]["state_dict"])                    # distinct checkpoints


def read_checkpoint_plain(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_snapshot_resume_mid_cycle_equals_an_uninterrupted_cycle(trained, tmp_path):
    import shutil

    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer

    cfg = _repeat_cfg(trained, "snapshot", cycle_epochs=3)
    train_ds, val_ds = trained["data"]
    base = tmp_path / "base"
    RepeatTrainer(cfg, 0, base / "repeat0", DistContext(), train_ds, val_ds).run()
    shutil.copytree(base, tmp_path / "killed")
    RepeatTrainer(cfg, 1, base / "repeat1", DistContext(), train_ds, val_ds).run()

    class Killed(RepeatTrainer):
        def _epoch(self, epoch):
            if epoch == 2:
                raise KeyboardInterrupt("killed mid-cycle")
            return super()._epoch(epoch)

    killed = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        Killed(cfg, 1, killed / "repeat1", DistContext(), train_ds, val_ds).run()
    resumed = RepeatTrainer(cfg, 1, killed / "repeat1", DistContext(), train_ds, val_ds)
    assert resumed.start_epoch == 2  # from its own last.pt, not again from repeat 0
    resumed.run()
    assert len(resumed.losses) == 1
    for name in ("last.pt", "model.pt"):
        a, b = _weights(base / "repeat1" / name), _weights(killed / "repeat1" / name)
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a), name


def test_warmstart_repeats_start_from_the_first_with_a_fresh_optimiser(trained, tmp_path):
    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer

    cfg = _repeat_cfg(trained, "warmstart")
    train_ds, val_ds = trained["data"]
    RepeatTrainer(cfg, 0, tmp_path / "repeat0", DistContext(), train_ds, val_ds).run()
    first_end = _weights(tmp_path / "repeat0" / "last.pt")
    ends = []
    for r in (1, 2):
        t = RepeatTrainer(cfg, r, tmp_path / f"repeat{r}", DistContext(), train_ds, val_ds)
        assert _same(t.model.state_dict(), first_end) and not t.opt.state_dict()["state"]
        t.run()
        ends.append(_weights(tmp_path / f"repeat{r}" / "model.pt"))
    assert not _same(ends[0], ends[1]) and not _same(ends[0], first_end)  # seeds differ: distinct checkpoints
