"""Organ supervision (YAML `network.organ_head`): the config's errors, the extra channels on every
network, organ maps through the label's transforms, the organ loss falling in a short training and
masked for cases without an organ map, and inference that sees only the lesion output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from petclick.core.errors import InputError

HEAD = {"labels": ["brain", "liver", ["kidneys", "bladder"]], "weight": 1.0}
TINY = {"segresnet": {"init_filters": 4, "blocks_down": [1, 1, 1], "dsdepth": 2},
        "dints": {"channel_mul": 0.25, "num_blocks": 2, "num_depths": 2},
        "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}}


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize("value, message", [
    ("brain", "must be a mapping"),
    ({"weight": 1.0}, "labels must be a non-empty list"),
    ({"labels": []}, "labels must be a non-empty list"),
    ({"labels": [0]}, "neither an organ label value"),
    ({"labels": [14, 14]}, "listed twice"),
    ({"labels": [14], "weight": 0}, "weight must be a number > 0"),
    ({"labels": [14], "loss": "focal"}, "loss must be"),
    ({"labels": [14], "weigth": 1}, "unknown key"),
])
def test_a_bad_organ_head_is_an_input_error_naming_the_key(tmp_path, value, message):
    from petclick.config.bundle import load_bundle_config
    from petclick.core.yamlio import write_yaml

    hyper = tmp_path / "hyper_parameters.yaml"
    resolved = {"data": {"spacing": None, "pet_clip": [0, 10]}, "training": {"num_epochs": 2, "val_every": 1}}
    write_yaml(hyper, {"preset": "demo", "network": {"name": "segresnet", "organ_head": value}, **resolved})
    with pytest.raises(InputError, match=f"network.organ_head: .*{message}") as err:
        load_bundle_config(str(hyper))
    assert str(hyper) in str(err.value)
    write_yaml(hyper, {"preset": "demo", "network": {"name": "segresnet", "organ_head": HEAD}, **resolved})
    assert load_bundle_config(str(hyper))["network"]["organ_head"] == HEAD


def test_organ_names_resolve_to_label_values_and_unknown_names_are_refused():
    from petclick.phantoms.labels import ORGAN_LABELS
    from petclick.training.organs import class_table, organ_head

    head = organ_head({"organ_head": {"labels": ["brain", [16, "bladder"]], "weight": 0.5}})
    assert head == {"labels": [[ORGAN_LABELS["brain"]], [16, ORGAN_LABELS["bladder"]]], "classes": 3,
                    "weight": 0.5, "loss": "dice_ce"}
    table = class_table(head["labels"])
    assert table[ORGAN_LABELS["brain"]] == 1 and table[16] == table[17] == 2 and table[14] == 0 and table[0] == 0
    assert organ_head({"organ_head": None}) is None
    with pytest.raises(InputError, match="unknown organ name 'livr'"):
        organ_head({"organ_head": {"labels": ["livr"]}})
    with pytest.raises(InputError, match="twice"):  # a name and its value
        organ_head({"organ_head": {"labels": ["liver", ORGAN_LABELS["liver"]]}})


# ---------------------------------------------------------------------------- networks
@pytest.mark.parametrize("name", sorted(TINY))
def test_every_network_gets_organ_channels_and_lesion_output_cuts_them(name):
    from petclick.networks.factory import as_list, build_network
    from petclick.networks.organ_head import LesionOutput, split_output

    torch.manual_seed(0)
    net = build_network(name, 4, 1, organ_classes=4, **TINY[name])
    size = 64 if name == "swinunetr" else 32  # SwinUNETR's bottleneck needs > 1 voxel in train mode
    x = torch.randn(1, 4, size, size, size)
    net.train()
    outs = as_list(net(x))
    assert len(outs) == (2 if name == "segresnet" else 1) and all(o.shape[1] == 5 for o in outs)  # every deep-supervision level carries the organ channels
    lesion, organs = split_output(net(x), 1)
    assert all(o.shape[1] == 1 for o in as_list(lesion)) and all(o.shape[1] == 4 for o in as_list(organs))
    net.eval()
    with torch.no_grad():
        full = as_list(net(x))[0]
        cut = as_list(LesionOutput(net, 1)(x))[0]
    assert cut.shape == (1, 1, size, size, size) and torch.equal(cut, full[:, :1])
    with pytest.raises(InputError, match="organ_classes"):
        build_network(name, 4, 1, organ_classes=1, **TINY[name])


def test_output_prior_sets_only_the_lesion_channel_of_each_head():
    from petclick.networks.factory import build_network
    from petclick.networks.output_prior import init_output_prior

    net = build_network("segresnet", 4, 1, organ_classes=3, **TINY["segresnet"])
    heads = init_output_prior(net, 0.01, 4, channels=1)
    assert len(heads) == 2  # both deep-supervision heads
    for h in heads:
        bias = net.get_submodule(h).bias
        assert bias[0].item() == pytest.approx(np.log(0.01 / 0.99), abs=1e-5)
        assert not torch.isclose(bias[1:], bias[:1]).any()  # organ channels keep their stock init


# ---------------------------------------------------------------------------- losses
def test_organ_loss_leaves_out_samples_without_an_organ_map():
    from petclick.training.loss import OrganLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 6, 6, requires_grad=True)
    target = torch.randint(0, 3, (2, 1, 6, 6, 6)).float()
    loss = OrganLoss()
    first_alone = loss(logits[:1], target[:1])
    masked = target.clone()
    masked[1] = -1
    assert torch.allclose(loss(logits, masked), first_alone)
    none = loss(logits, torch.full_like(target, -1.0))
    assert none.item() == 0.0 and none.requires_grad  # part of the graph, no gradient
    assert loss(logits, target).item() > 0


# ---------------------------------------------------------------------------- training
def _organ_datalist(tiny_cohort: Path, tmp_path: Path, organs: str) -> Path:
    """A copy of the tiny cohort's datalist whose organ maps are: `none` (no entry has one) or
    `label` (every entry's organ map is its own lesion label file)."""
    data = json.loads(tiny_cohort.read_text())
    for e in data["training"]:
        e.pop("organs", None)
        if organs == "label":
            e["organs"] = e["label"]
    out = tmp_path / f"datalist_{organs}.json"
    out.write_text(json.dumps(data))
    return out


def _cfg(make_bundle, root: Path, head: dict | None = HEAD, **training):
    from petclick.config.bundle import load_bundle_config

    bundle = make_bundle(root, overrides={"network": {"organ_head": head},
                                          "training": {"num_epochs": 4, "num_iterations_per_epoch": 3, "val_every": 4,
                                                       "lr": 0.01, **training}})
    return load_bundle_config([bundle / "configs" / "hyper_parameters.yaml", bundle / "configs" / "inference.yaml"])


@pytest.fixture(scope="module")
def organ_trained(make_bundle, tmp_path_factory):
    """A segresnet bundle with an organ head, trained 4 epochs of 3 iterations on fold 0."""
    from petclick.training.data import fold_files, train_dataset, val_dataset
    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer

    cfg = _cfg(make_bundle, tmp_path_factory.mktemp("organ_trained"))
    files = fold_files(cfg["datalist"], cfg["dataroot"], 0)
    assert all(f.get("organs") for f in files.train)  # the phantoms' labelsTr_organs maps
    train_ds, val_ds = train_dataset(cfg, files.train, cfg["data"]["roi"]), val_dataset(cfg, files.val)
    trainer = RepeatTrainer(cfg, 0, Path(cfg["ckpt_path"]) / "repeat0", DistContext(), train_ds, val_ds)
    trainer.run()
    return {"cfg": cfg, "trainer": trainer}


def test_the_organ_loss_falls_in_a_short_training(organ_trained):
    organ = organ_trained["trainer"].organ_losses
    assert len(organ) == 4 and all(np.isfinite(organ)) and all(o > 0 for o in organ)
    assert organ[-1] < organ[0]


def test_organ_maps_take_the_labels_spatial_transforms(make_bundle, tiny_cohort, tmp_path):
    """With each case's lesion label as its organ map (organ class 1 = label 1), every training patch's
    organ map equals its label after the random crops, rotations, scalings and flips."""
    from petclick.training.data import fold_files, train_dataset

    cfg = _cfg(make_bundle, tmp_path, {"labels": [1]})
    cfg["augment"].update(prob=1.0, flip_prob=0.5)
    files = fold_files(_organ_datalist(tiny_cohort, tmp_path, "label"), cfg["dataroot"], 0)
    ds = train_dataset(cfg, files.train[:3], cfg["data"]["roi"])
    n_fg = 0
    for n in range(len(ds)):
        for patch in ds[n]:
            assert patch["organs_valid"] == 1.0
            assert torch.equal(torch.as_tensor(patch["organs"]), torch.as_tensor(patch["label"]))
            n_fg += int(torch.as_tensor(patch["label"]).sum() > 0)
    assert n_fg > 0  # some patches hold lesion (= organ) voxels


def test_a_case_without_an_organ_map_trains_on_the_lesion_loss_alone(make_bundle, tiny_cohort, tmp_path):
    from monai.data import list_data_collate

    from petclick.networks.organ_head import split_output
    from petclick.training.data import fold_files, train_dataset
    from petclick.training.distributed import DistContext
    from petclick.training.loop import RepeatTrainer

    cfg = _cfg(make_bundle, tmp_path)
    with_maps = fold_files(cfg["datalist"], cfg["dataroot"], 0).train[:2]
    without = fold_files(_organ_datalist(tiny_cohort, tmp_path, "none"), cfg["dataroot"], 0).train[:2]
    trainer = RepeatTrainer(cfg, 0, tmp_path / "repeat0", DistContext(), [0], [])
    torch.manual_seed(0)
    batch = trainer.batch_stage(list_data_collate([p for item in train_dataset(cfg, without, cfg["data"]["roi"])
                                                   for p in item]))
    assert torch.equal(batch["organs_valid"], torch.zeros(4, dtype=batch["organs_valid"].dtype))
    assert not torch.as_tensor(batch["organs"]).any()
    trainer.model.train()
    out = trainer.model(batch["image"])
    y = batch["label"]
    lesion_only = trainer.loss_fn(split_output(out, 1)[0], y)
    assert torch.equal(trainer.compute_loss(out, y, batch), lesion_only)
    assert trainer._organ_epoch == []                   # a batch without organ maps is not in the epoch's organ loss
    # with organ maps the organ term is there
    mapped = trainer.batch_stage(list_data_collate([p for item in train_dataset(cfg, with_maps, cfg["data"]["roi"])
                                                    for p in item]))
    assert bool(mapped["organs_valid"].all())
    out = trainer.model(mapped["image"])
    total = trainer.compute_loss(out, mapped["label"], mapped)
    assert total > trainer.loss_fn(split_output(out, 1)[0], mapped["label"]) + 0.1
    assert len(trainer._organ_epoch) == 1 and trainer._organ_epoch[0] > 0


# ---------------------------------------------------------------------------- inference
def test_a_checkpoint_with_an_organ_head_predicts_its_lesion_output(organ_trained, tiny_cohort, monkeypatch):
    from petclick.inference.checkpoint_set import MODELS
    from petclick.inference.predictor import EnsemblePredictor
    from petclick.io.clickfile import read_clicks
    from petclick.io.datalist import resolve_entry
    from petclick.io.images import load_case
    from petclick.networks.factory import build_network
    from petclick.networks.organ_head import LesionOutput
    from petclick.runtime.checkpoint import build_model, find_checkpoints, read_checkpoint
    from petclick.runtime import onnxrt

    cfg = organ_trained["cfg"]
    path = find_checkpoints(Path(cfg["ckpt_path"]))[0]
    ckpt = read_checkpoint(path)
    assert ckpt["organ_head"]["classes"] == 4 and ckpt["out_channels"] == 1
    model = build_model(ckpt)
    assert isinstance(model, LesionOutput)
    raw = build_network(ckpt["network"]["name"], ckpt["in_channels"], 1, organ_classes=4,
                        **ckpt["network"]["kwargs"]).eval()
    raw.load_state_dict(ckpt["state_dict"])
    x = torch.rand(1, 4, *cfg["data"]["roi"])
    with torch.no_grad():
        assert torch.equal(model(x), raw(x)[:, :1])
    # the normal inference path on a testing case: PyTorch and ONNX Runtime give the same probabilities
    entry = resolve_entry(json.loads(tiny_cohort.read_text())["testing"][0], tiny_cohort.parent)
    case = load_case(entry["image"], entry["pet"])
    clicks = read_clicks(entry["clicks"]).first(3)
    probs = {}
    for backend in ("torch", "onnxruntime") if onnxrt.available() else ("torch",):
        monkeypatch.setenv("PETCLICK_BACKEND", backend)
        MODELS.clear()
        probs[backend] = EnsemblePredictor([path]).predict(case, clicks)
    MODELS.clear()
    p = probs["torch"]
    assert p.shape == case.shape and np.isfinite(p).all() and 0 <= p.min() and p.max() <= 1
    if "onnxruntime" in probs:
        assert np.abs(probs["onnxruntime"] - p).max() < 1e-3


def test_old_checkpoints_without_the_flag_load_as_plain_networks(tmp_path):
    from petclick.networks.factory import build_network
    from petclick.networks.organ_head import LesionOutput
    from petclick.runtime.checkpoint import build_model, read_checkpoint, save_checkpoint

    net = build_network("segresnet", 4, 1, **TINY["segresnet"]).eval()
    path = save_checkpoint(tmp_path / "model.pt", {
        "state_dict": net.state_dict(), "network": {"name": "segresnet", "kwargs": TINY["segresnet"]},
        "in_channels": 4, "out_channels": 1, "preprocess": {"roi": [32, 32, 32]}})
    ckpt = read_checkpoint(path)
    assert "organ_head" not in ckpt
    model = build_model(ckpt)
    assert not isinstance(model, LesionOutput)
    x = torch.rand(1, 4, 32, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
