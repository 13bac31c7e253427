"""progress.yaml files as Auto3DSeg reads them: a list of dicts whose last entry's
`best_avg_dice_score` is the model's score (BundleAlgo.get_score reads `<ckpt_path>/progress.yaml`).

Each repeat writes `<ckpt_path>/repeat<r>/progress.yaml` (one entry per validation); the fold's
`<ckpt_path>/progress.yaml` gets one entry per finished repeat whose score is the mean of the
repeats' best scores so far (the fold's bundle ensembles all of them)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import yaml

from petclick.core.yamlio import write_yaml

PROGRESS = "progress.yaml"


def read_progress(path: str | Path) -> list[dict[str, Any]]:
    """Entries of a progress.yaml (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    data = yaml.safe_load(path.read_text()) or []
    return list(data) if isinstance(data, list) else []


def write_progress(path: str | Path, entries: list[Mapping[str, Any]]) -> Path:
    return write_yaml(path, [dict(e) for e in entries])


def _finite(x: float) -> float:
    return float(x) if x is not None and math.isfinite(float(x)) else 0.0


def update_fold_progress(ckpt_path: str | Path, repeat_scores: Mapping[int, float]) -> Path:
    """Append the fold-level entry: mean of the finished repeats' best scores."""
    path = Path(ckpt_path) / PROGRESS
    entries = read_progress(path)
    scores = {int(r): _finite(s) for r, s in sorted(repeat_scores.items())}
    mean = sum(scores.values()) / len(scores) if scores else 0.0
    entries.append({"repeats_done": len(scores), "repeat_scores": scores, "best_avg_dice_score": float(mean)})
    return write_progress(path, entries)
