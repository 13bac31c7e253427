"""The one validated bundle config: completed from the preset, checked against the key registry,
one merge of the bundle files, and each disagreement issue 17 listed resolved in one place."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from petclick.config.bundle import (BundleConfig, iterations_per_epoch, load_bundle_config, merge_bundle_files,
                                    validate_config)
from petclick.config.presets import DEMO, DEFAULT_ENCODING, MAX_CLICKS
from petclick.core.errors import InputError
from petclick.core.yamlio import deep_merge, write_yaml


def _hyper(tmp_path: Path, **sections) -> Path:
    """A hand-written hyper_parameters.yaml (what fill_template_config resolves from the data given)."""
    base = {"preset": "demo", "fold": 0, "network": {"name": "segresnet"}, "data": {"spacing": None}}
    return write_yaml(tmp_path / "configs" / "hyper_parameters.yaml", deep_merge(base, sections))


# ---------------------------------------------------------------------------- the object
def test_missing_keys_come_from_the_preset_and_read_both_ways(tmp_path):
    cfg = load_bundle_config(_hyper(tmp_path, training={"lr": 0.5}))
    assert isinstance(cfg, BundleConfig) and isinstance(cfg, dict)
    assert cfg.training.lr == cfg["training"]["lr"] == 0.5 and cfg["training"].get("lr") == 0.5
    # every key the file lacks is the demo preset's, the one place defaults are stated
    assert cfg["training"]["num_epochs"] == DEMO["training"]["num_epochs"] == 45
    assert cfg.data.roi == DEMO["data"]["roi"] and cfg.clicks.max_clicks == MAX_CLICKS
    assert cfg.clicks.encoding == DEFAULT_ENCODING and cfg.training.device is None
    assert dict(cfg["augment"]) == DEMO["augment"]
    with pytest.raises(AttributeError):
        cfg.training.no_such_key


@pytest.mark.parametrize("section, key, value, message", [
    ("training", "lr", "fast", "training.lr: must be a number > 0"),
    ("training", "lr", 0, "training.lr: must be a number > 0"),
    ("data", "roi", [32, 32], "data.roi: must be a list of 3 integers"),
    ("data", "cache_rate", 1.5, "data.cache_rate: must be a number >= 0 and <= 1"),
    ("infer", "mode", "mean", "infer.mode: must be one of 'gaussian', 'constant'"),
    ("infer", "local_update", "average", "infer.local_update: must be one of 'replace', 'delta'"),
    ("network", "output_prior", 1.0, "network.output_prior"),
    ("augment", "flip_prob", True, "augment.flip_prob"),
    ("training", "amp", "yes", "training.amp: must be true or false"),   # type inferred from the preset
])
def test_bad_values_name_the_file_and_the_key(tmp_path, section, key, value, message):
    path = _hyper(tmp_path, **{section: {key: value}})
    with pytest.raises(InputError, match=message) as err:
        load_bundle_config(path)
    assert err.value.source == str(path)


def test_a_bad_override_names_the_command_line(tmp_path):
    with pytest.raises(InputError, match="training.num_epochs") as err:
        load_bundle_config(_hyper(tmp_path), {"training#num_epochs": -1})
    assert err.value.source == "command-line overrides"
    assert load_bundle_config(_hyper(tmp_path), {"training#num_epochs": 2})["training"]["num_epochs"] == 2


def test_every_local_update_passes_the_schema(tmp_path):
    """The schema (layer 1) lists local mode's updates again; it must accept every one the engine knows."""
    from petclick.inference.engine import LOCAL_UPDATES
    for update in LOCAL_UPDATES:
        assert load_bundle_config(_hyper(tmp_path, infer={"local_update": update})).infer.local_update == update


def test_unknown_keys_are_kept_and_warned_about(tmp_path, caplog):
    path = _hyper(tmp_path, training={"lrr": 0.1}, my_feature={"on": True})
    with caplog.at_level(logging.WARNING, logger="petclick.config"):
        cfg = load_bundle_config(path)
    assert cfg["training"]["lrr"] == 0.1 and cfg["my_feature"] == {"on": True}
    assert set(cfg.unknown) == {"training.lrr", "my_feature"}
    assert any("training.lrr" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_a_registered_key_is_checked(tmp_path, monkeypatch):
    from petclick.config import schema

    monkeypatch.setitem(schema.KEYS, "training.repeat_mode", schema.choice("seeds", "folds"))
    assert load_bundle_config(_hyper(tmp_path, training={"repeat_mode": "seeds"})).unknown == ()
    with pytest.raises(InputError, match="training.repeat_mode: must be one of 'seeds', 'folds'"):
        load_bundle_config(_hyper(tmp_path, training={"repeat_mode": "x"}))


def test_unresolved_auto_and_unknown_presets_are_errors(tmp_path):
    with pytest.raises(InputError, match="training.num_epochs is 'auto'"):
        load_bundle_config(_hyper(tmp_path, training={"num_epochs": "auto"}))
    with pytest.raises(InputError, match="preset"):
        load_bundle_config(_hyper(tmp_path, preset="huge"))
    with pytest.raises(InputError, match="network: must be a mapping"):
        validate_config({"network": "segresnet"})


def test_every_preset_key_has_a_rule_and_passes_it():
    from petclick.config.presets import PRESETS
    from petclick.config.schema import check_value, rule_for

    for name, preset in PRESETS.items():
        for section, values in preset.items():
            for key, value in values.items():
                assert rule_for(f"{section}.{key}") is not None
                assert check_value(f"{section}.{key}", value) is None, (name, section, key, value)


# ---------------------------------------------------------------------------- one merge
def test_bundle_files_merge_one_way_for_training_and_inference(tmp_path, monkeypatch):
    hyper = _hyper(tmp_path, device="cuda:3", k=2, training={"device": "cpu"})
    inference = write_yaml(tmp_path / "configs" / "inference.yaml", {"device": None, "k": 7, "bundle_root": "b"})
    merged, layers = merge_bundle_files(f"{inference},{hyper},{tmp_path / 'configs' / 'README.md'}")
    assert [Path(n).name for n, _ in layers] == ["hyper_parameters.yaml", "inference.yaml"]  # non-YAML skipped
    assert merged["k"] == 7 and merged["device"] is None and merged["training"]["device"] == "cpu"
    assert load_bundle_config([hyper, inference])["k"] == 7

    import petclick.inference.bundle as bundle

    monkeypatch.setattr(bundle, "find_checkpoints", lambda root: [Path(root) / "model.pt"])
    monkeypatch.setattr(bundle, "cached_predictor", lambda *a, **k: None)
    inferer = bundle.BundleInferer([hyper, inference])
    assert inferer.k == 7 and inferer.device in ("cpu", "cuda")  # inference.yaml's null device, not hyper's cuda:3


def test_training_reads_training_device(tmp_path, monkeypatch):
    import petclick.training.loop as loop

    seen = []

    def stop(device, timeout_s=None):
        seen.append(device)
        raise RuntimeError("stop")

    monkeypatch.setattr(loop, "init_distributed", stop)
    cfg = load_bundle_config([_hyper(tmp_path, ckpt_path=str(tmp_path / "m"), training={"device": "cpu"}),
                              write_yaml(tmp_path / "configs" / "inference.yaml", {"device": "cuda:1"})])
    with pytest.raises(RuntimeError, match="stop"):
        loop.train_fold(cfg)
    assert seen == ["cpu"]


# ---------------------------------------------------------------------------- one rule each
def test_one_fold_rule_for_counting_and_training(tmp_path, tiny_cohort):
    import json

    from petclick.auto3dseg.algo import _count_train
    from petclick.io.datalist import split_fold
    from petclick.training.data import fold_files

    data = json.loads(Path(tiny_cohort).read_text())
    files = fold_files(tiny_cohort, tiny_cohort.parent, 1)
    assert _count_train(Path(tiny_cohort), 1) == len(files.train) == len(split_fold(data["training"], 1, "x")[0])
    del data["training"][0]["fold"]
    broken = tmp_path / "datalist.json"
    broken.write_text(json.dumps(data))
    for count in (lambda: _count_train(broken, 1), lambda: fold_files(broken, tiny_cohort.parent, 1)):
        with pytest.raises(InputError, match=r"training\[0\].*lacks a 'fold'"):
            count()


def test_one_iterations_per_epoch_for_epochs_and_schedule():
    import petclick.training.loop as loop
    from petclick.auto3dseg.algo import derive_from_data
    from petclick.config.presets import get_preset

    assert loop.iterations_per_epoch is iterations_per_epoch
    cfg = get_preset("autopet")
    cfg["data"]["batch_size"] = 2
    assert iterations_per_epoch(cfg, 9) == 5
    stats = {"stats_summary": {"image_stats": {"spacing": {"median": [2, 2, 3], "min": [2, 2, 3], "max": [2, 2, 3]},
                                               "shape": {"median": [400, 400, 326]}}}}
    out = derive_from_data(cfg, stats, 9)
    assert out["training"]["num_epochs"] == min(1000, round(50000 / 5))


def test_default_encoding_is_stated_once(monkeypatch):
    """clickinput, the encoder and a checkpoint without an encoding all read presets.DEFAULT_ENCODING."""
    from petclick.clicks.encoding import EncodeClicks, encoder_from_config
    from petclick.runtime.clickinput import click_channels

    assert click_channels(None) == 2 and EncodeClicks().encoding == "edt"
    monkeypatch.setitem(DEFAULT_ENCODING, "channels", "signed")
    assert click_channels(None) == 1 and encoder_from_config(None).num_channels == 1


def test_max_clicks_and_the_demo_roi_are_stated_once():
    from petclick.auto3dseg.algo import merged_config
    from petclick.clicks.click_curriculum import MAX_CLICKS as CURRICULUM_MAX
    from petclick.config.packaged import BUNDLES
    from petclick.core.yamlio import read_yaml

    assert CURRICULUM_MAX is MAX_CLICKS
    for algo in ("segresnet", "dints"):  # their ROI is the preset's: the templates do not restate it
        template = read_yaml(BUNDLES / algo / "configs" / "hyper_parameters.yaml")
        assert "roi" not in (template["presets"]["demo"].get("data") or {})
        assert merged_config(template, {"preset": "demo"}, algo)["data"]["roi"] == DEMO["data"]["roi"]


def test_fill_template_config_checks_the_merged_values(make_bundle, tmp_path):
    with pytest.raises(InputError, match="training.lr: must be a number > 0") as err:
        make_bundle(tmp_path, overrides={"training": {"num_epochs": 1, "lr": "fast"}})
    assert "input.yaml" in err.value.source and "segresnet" in err.value.source


def test_a_new_preset_key_is_known_and_type_checked_from_its_default(monkeypatch):
    """A feature that adds its default to presets.py needs nothing else: the type comes from the default."""
    from petclick.config.presets import AUTOPET
    from petclick.config.schema import check_value, rule_for

    monkeypatch.setitem(AUTOPET["infer"], "cache_mb", 2048)
    monkeypatch.setitem(AUTOPET["infer"], "engine", "exact")
    assert rule_for("infer.cache_mb") is not None and rule_for("infer.nothing") is None
    assert check_value("infer.cache_mb", 512) is None and "integer" in check_value("infer.cache_mb", "big")
    assert check_value("infer.engine", "local") is None and check_value("infer.engine", 3) is None
    assert check_value("infer.engine", [1]) is not None


def test_exponent_floats_read_as_numbers_in_config_files_and_overrides(tmp_path):
    """`lr: 1e-4` is a number (YAML 1.2), not the string PyYAML's YAML 1.1 default makes of it."""
    from petclick.commands.hpo import parse_sets
    from petclick.core.yamlio import read_yaml

    f = tmp_path / "h.yaml"
    f.write_text("training:\n  lr: 1e-4\n  weight_decay: 5E-3\n  num_epochs: 10\n  name: 1e\n  big: 2e3\n")
    t = read_yaml(f)["training"]
    assert t["lr"] == pytest.approx(1e-4) and isinstance(t["lr"], float)
    assert t["weight_decay"] == pytest.approx(5e-3)
    assert t["num_epochs"] == 10 and isinstance(t["num_epochs"], int)
    assert t["name"] == "1e" and t["big"] == 2000.0
    assert parse_sets(["training#lr=1e-3"]) == {"training#lr": pytest.approx(1e-3)}
