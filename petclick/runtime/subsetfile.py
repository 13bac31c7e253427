"""The checkpoint subset file (`petclick subset` writes it; every model path accepts it): JSON with
`checkpoints`, a non-empty list of paths (relative ones below the file's folder), and the choice's
meta beside them (k, criterion, validation cases, algo_weights). The file format lives in the runtime
layer so that checkpoint discovery (petclick.runtime.checkpoint) reads it without importing the
choosing code (petclick.inference.subset)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError


def write_subset(path: str | Path, checkpoints: Sequence[Path], meta: dict[str, Any] | None = None) -> Path:
    """The chosen checkpoints as JSON (paths relative to the file's folder where they lie below it),
    with `meta` (e.g. the criterion and the validation cases) beside them."""
    path = Path(path)
    root = path.parent.resolve()
    items = []
    for c in checkpoints:
        c = Path(c).resolve()
        items.append(str(c.relative_to(root)) if c.is_relative_to(root) else str(c))
    return atomic_write_text(path, json.dumps({"checkpoints": items, **(meta or {})}, indent=1) + "\n")


def read_subset_file(path: str | Path) -> dict[str, Any]:
    """The JSON object of a `write_subset` file (its `checkpoints`, a non-empty list of paths, and
    its meta); anything else raises InputError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        items = data["checkpoints"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"not a checkpoint subset file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise InputError(path, "not a checkpoint subset file ('checkpoints' must be a non-empty list of paths)")
    return data


def read_subset(path: str | Path) -> list[Path]:
    """The checkpoints a `write_subset` file names (relative ones below its folder); a bad file raises InputError."""
    path = Path(path)
    items = read_subset_file(path)["checkpoints"]
    out = [Path(i) if Path(i).is_absolute() else path.parent / i for i in items]
    missing = [str(p) for p in out if not p.is_file()]
    if missing:
        raise InputError(path, f"checkpoint(s) not found: {', '.join(missing)}")
    return out
