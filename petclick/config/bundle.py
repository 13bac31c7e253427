"""Bundle configuration: read the YAML files a bundle script receives, merge them, apply overrides,
complete and validate them into one BundleConfig.

Layers of a bundle's `configs/hyper_parameters.yaml`, lowest first (fill_template_config writes
the merged, resolved result, so the generated bundle is explicit and editable):

1. petclick's preset (`preset: demo|autopet` in input.yaml, see presets.py);
2. the bundle template's own sections (e.g. `network`), then its `presets: {<preset>: ...}`;
3. input.yaml: `num_repeats`, `clicks` (merged into the `clicks` section), `overrides`
   (any hyper-parameter, for every algorithm) and `algo_overrides: {<algo>: {...}}`.

A bundle's two files merge in one way everywhere (`merge_bundle_files`, used by training,
validation, the DiNTS search and inference): hyper_parameters.yaml first, then inference.yaml,
then any other YAML/JSON file by name; a later file's values replace an earlier one's (mappings
merge key by key). So inference.yaml's top-level `device` is the inference device, and training
reads its own, `training.device`.

`load_bundle_config` then applies command-line overrides (nested mappings or `#`-separated keys,
`{"training#num_epochs": 3}`, as MONAI bundle overrides are written), fills every key the files
lack from the config's preset (defaults are stated once, in presets.py) and checks every value
against petclick.config.schema: a bad type or range is an InputError naming the file and the key;
an unknown key is kept and logged as a warning.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from petclick.config.presets import get_preset
from petclick.config.schema import SECTIONS, check_value, rule_for
from petclick.core.errors import InputError
from petclick.core.yamlio import apply_overrides, deep_merge, read_yaml

log = logging.getLogger("petclick.config")
#: A bundle's two config files (configs/ of every template and generated bundle).
HYPER = "hyper_parameters.yaml"
INFERENCE = "inference.yaml"
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_PRESET = "autopet"
#: Values only fill_template_config resolves (from the data analysis); a loaded config must not hold "auto".
RESOLVED_BY_FILL = ("data.spacing", "data.pet_clip", "training.num_epochs", "training.val_every")

__all__ = ["HYPER", "INFERENCE", "SECTIONS", "BundleConfig", "ConfigSection", "config_files", "iterations_per_epoch",
           "load_bundle_config", "merge_bundle_files", "require", "validate_config"]


class ConfigSection(dict):
    """A config section: a dict (so `cfg["training"]["lr"]`, `.get` and `dict(...)` work as before)
    whose keys also read as attributes (`cfg.training.lr`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class BundleConfig(ConfigSection):
    """The validated config of one bundle: the sections (network, data, augment, clicks, training,
    infer) as ConfigSections plus the top-level keys. `source` names the files it came from and
    `unknown` lists the keys petclick does not know (kept, warned about). Values are checked when
    the object is made; later edits are not re-checked."""

    source: str = "config"
    unknown: tuple[str, ...] = ()


def config_files(config_file: str | Sequence[str] | None) -> list[Path]:
    """The config files a script received: a list, or one string of comma-separated paths
    (how Auto3DSeg passes `--config_file` through Fire)."""
    if config_file is None:
        return []
    if isinstance(config_file, (str, Path)):
        items: Iterable[str] = [s.strip().strip("'\"") for s in str(config_file).split(",")]
    else:
        items = [str(s).strip().strip("'\"") for s in config_file]
    return [Path(s) for s in items if s]


def _file_order(path: Path) -> tuple[int, str]:
    return ({HYPER: 0, INFERENCE: 1}.get(path.name, 2), path.name)


def merge_bundle_files(config_file: str | Sequence[str] | None) -> tuple[dict[str, Any], list[tuple[str, dict]]]:
    """(merged content, [(file, content), ...] in merge order) of a bundle's config files:
    hyper_parameters.yaml, then inference.yaml, then other YAML/JSON files by name, each deep-merged
    over the ones before (a later file wins). Files of other kinds are not config files (MONAI passes
    every file of configs/) and are skipped; a missing config file is an InputError."""
    files = sorted((f for f in config_files(config_file) if f.suffix in CONFIG_SUFFIXES), key=_file_order)
    merged: dict[str, Any] = {}
    layers = []
    for f in files:
        content = read_yaml(f)
        layers.append((str(f), content))
        merged = deep_merge(merged, content)
    return merged, layers


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) of every top-level key and every key of a section."""
    for key, value in data.items():
        path = f"{prefix}{key}"
        if not prefix and key in SECTIONS and isinstance(value, Mapping):
            yield from _leaves(value, f"{key}.")
        else:
            yield path, value


def _has(data: Mapping[str, Any], path: str) -> bool:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def validate_config(data: Mapping[str, Any], source: str = "config",
                    layers: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> BundleConfig:
    """`data` as a BundleConfig after checking every value against petclick.config.schema.

    A bad value raises InputError naming the layer (file or overrides) that set it, else `source`,
    and the dotted key; unknown keys are logged as warnings, naming them the same way."""

    def origin(path: str) -> str:
        return next((name for name, content in reversed(layers) if _has(content, path)), source)

    for section in SECTIONS:
        if section in data and not isinstance(data[section], Mapping):
            raise InputError(origin(section), f"{section}: must be a mapping of its keys, got {data[section]!r}")
    unknown = []
    for path, value in _leaves(data):
        if rule_for(path) is None:
            unknown.append(path)
            continue
        problem = check_value(path, value)
        if problem:
            raise InputError(origin(path), f"{path}: {problem}")
    for path in unknown:
        log.warning("%s: %s is not a petclick config key (kept; see petclick/config/schema.py)", origin(path), path)
    cfg = BundleConfig({k: ConfigSection(v) if k in SECTIONS else v for k, v in data.items()})
    cfg.source, cfg.unknown = source, tuple(unknown)
    return cfg


def load_bundle_config(config_file: str | Sequence[str] | None, overrides: Mapping[str, Any] | None = None,
                       ) -> BundleConfig:
    """The validated config of a bundle's files (see `merge_bundle_files`), with command-line
    `overrides` (`training#num_epochs=1` style) applied and every missing key filled from the
    config's `preset` (default autopet).

    Expressions (`$...`, `@...`) are not evaluated: petclick's training config is plain values.
    """
    merged, layers = merge_bundle_files(config_file)
    if not layers:
        raise InputError("config_file", "no bundle config file given (--config_file)")
    source = ", ".join(name for name, _ in layers)
    if overrides:
        layers.append(("command-line overrides", apply_overrides({}, overrides, "command-line overrides")))
    merged = apply_overrides(merged, overrides, "command-line overrides")
    preset = merged.get("preset", DEFAULT_PRESET)
    if check_value("preset", preset):
        raise InputError(source, f"preset: {check_value('preset', preset)}")
    complete = deep_merge(get_preset(str(preset)), merged)
    cfg = validate_config(complete, source, layers)
    for path in RESOLVED_BY_FILL:
        section, key = path.split(".")
        if cfg[section].get(key) == "auto":
            raise InputError(source, f"{path} is 'auto': fill_template_config resolves it from the data analysis; "
                                     "give a value")
    return cfg


def iterations_per_epoch(cfg: Mapping[str, Any], n_items: int) -> int:
    """Training iterations of one epoch: `training.num_iterations_per_epoch`, or (null) one pass over
    `n_items` training images in batches of `data.batch_size`."""
    n = cfg["training"].get("num_iterations_per_epoch")
    return int(n) if n else max(1, math.ceil(int(n_items) / int(cfg["data"]["batch_size"])))


def require(config: Mapping[str, Any], keys: Iterable[str], source: str) -> None:
    """Raise InputError naming `source` when a required key is missing."""
    missing = [k for k in keys if k not in config]
    if missing:
        raise InputError(source, f"missing key(s) {missing}")
