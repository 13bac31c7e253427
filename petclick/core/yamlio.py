"""YAML utilities of every layer: read/write YAML files with errors that name them, and merge nested
mappings and `a#b#c` overrides (as MONAI bundle overrides are written)."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `base` with `update` merged in recursively (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in (update or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(config: Mapping[str, Any], overrides: Mapping[str, Any] | None,
                    source: str = "overrides") -> dict[str, Any]:
    """Merge `overrides` into `config`; keys may be nested mappings or `a#b#c` paths."""
    out = copy.deepcopy(dict(config))
    if overrides is None:
        return out
    if not isinstance(overrides, Mapping):
        raise InputError(source, f"must be a mapping of hyper-parameters, got {type(overrides).__name__}")
    for key, value in overrides.items():
        parts = [p for p in str(key).split("#") if p] or [str(key)]
        nested: Any = value
        for part in reversed(parts[1:]):
            nested = {part: nested}
        out = deep_merge(out, {parts[0]: nested})
    return out


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader that reads floats as YAML 1.2 does: `1e-4`, `5E3` and `1.0e5` are numbers
    (YAML 1.1, PyYAML's default, needs a dot and a signed exponent and reads them as strings); the
    forms YAML 1.1 already reads as floats keep its resolver."""


Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                             re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml_text(text: str) -> Any:
    """Parse YAML text with petclick's Loader (yaml.YAMLError on malformed text)."""
    return yaml.load(text, Loader=Loader)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML/JSON file as a dict; missing or malformed files raise InputError naming them."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config file not found")
    try:
        data = load_yaml_text(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(path, f"malformed YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, f"must hold a mapping, got {type(data).__name__}")
    return data


def write_yaml(path: str | Path, data: Mapping[str, Any], header: str = "") -> Path:
    """Write `data` as block-style YAML (lists of numbers inline) with an optional comment header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    class _Dumper(yaml.SafeDumper):
        pass

    def _list(dumper, value):
        flow = all(isinstance(v, (int, float, str, bool)) or v is None for v in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)

    _Dumper.add_representer(list, _list)
    _Dumper.add_representer(tuple, _list)
    text = yaml.dump(_plain(data), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    atomic_write_text(path, (header.rstrip() + "\n" if header else "") + text)
    return path


def _plain(value: Any) -> Any:
    """Tuples, numpy scalars and Paths as plain YAML types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
