"""Bundle configuration: read the YAML files a bundle script receives, merge layers, apply overrides.

Layers of a bundle's `configs/hyper_parameters.yaml`, lowest first (fill_template_config writes
the merged, resolved result, so the generated bundle is explicit and editable):

1. petclick's preset (`preset: demo|autopet` in input.yaml, see presets.py);
2. the bundle template's own sections (e.g. `network`), then its `presets: {<preset>: ...}`;
3. input.yaml: `num_repeats`, `clicks` (merged into the `clicks` section), `overrides`
   (any hyper-parameter, for every algorithm) and `algo_overrides: {<algo>: {...}}`.

Overrides are nested mappings (`{training: {num_epochs: 3}}`) or `#`-separated keys
(`{"training#num_epochs": 3}`), as MONAI bundle overrides are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from petclick.core.errors import InputError
from petclick.core.yamlio import apply_overrides, deep_merge, read_yaml

#: Top-level keys of a resolved training config (what train.py reads from the bundle configs).
SECTIONS = ("network", "data", "augment", "clicks", "training", "infer")
#: A bundle's two config files (configs/ of every template and generated bundle).
HYPER = "hyper_parameters.yaml"
INFERENCE = "inference.yaml"


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


def load_bundle_config(config_file: str | Sequence[str] | None, overrides: Mapping[str, Any] | None = None,
                       ) -> dict[str, Any]:
    """The merged content of a bundle's config files (hyper_parameters.yaml first, inference.yaml's
    keys too), with command-line `overrides` (`training#num_epochs=1` style) applied.

    Expressions (`$...`, `@...`) are not evaluated: petclick's training config is plain values.
    """
    files = config_files(config_file)
    if not files:
        raise InputError("config_file", "no bundle config file given (--config_file)")
    merged: dict[str, Any] = {}
    for f in sorted(files, key=lambda p: (p.name != HYPER, p.name)):
        merged = deep_merge(merged, read_yaml(f))
    return apply_overrides(merged, overrides, "command-line overrides")


def require(config: Mapping[str, Any], keys: Iterable[str], source: str) -> None:
    """Raise InputError naming `source` when a required key is missing."""
    missing = [k for k in keys if k not in config]
    if missing:
        raise InputError(source, f"missing key(s) {missing}")
