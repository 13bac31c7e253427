"""progress.yaml files as Auto3DSeg reads them: a list of dicts whose last entry's
`best_avg_dice_score` is the model's score (BundleAlgo.get_score reads `<ckpt_path>/progress.yaml`).

Each repeat writes `<ckpt_path>/repeat<r>/progress.yaml` (one entry per validation); the fold's
`<ckpt_path>/progress.yaml` gets one entry per finished repeat whose score is the mean of the
repeats' best scores so far (the fold's bundle ensembles all of them). `<ckpt_path>/status.json`
(FoldStatus) says after every epoch where the fold's training stands."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping


from petclick.core.yamlio import load_yaml_text, write_yaml

PROGRESS = "progress.yaml"


def read_progress(path: str | Path) -> list[dict[str, Any]]:
    """Entries of a progress.yaml (empty when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    data = load_yaml_text(path.read_text()) or []
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


STATUS = "status.json"


class FoldStatus:
    """`<ckpt_path>/status.json`, rewritten (atomically) after every epoch: where this fold's training
    stands, for a person watching (petclick demo follows it; AutoRunner hides the script's output).

    {"fold", "repeat", "repeats", "epoch", "epochs", "iterations_done", "iterations_total",
     "iterations_at_start", "elapsed_s", "loss", "val_score", "state": "training" | "finished"}
    `iterations_*` count the whole fold (every repeat); `elapsed_s` and `iterations_at_start` are
    this process's (a resumed run starts part-way)."""

    def __init__(self, ckpt_path: str | Path, fold: int, epochs: Mapping[int, int], iterations_per_epoch: int):
        self.path = Path(ckpt_path) / STATUS
        self.fold, self.epochs, self.iters = int(fold), {int(r): int(e) for r, e in epochs.items()}, int(iterations_per_epoch)
        self.order = list(self.epochs)
        self.total = sum(self.epochs.values()) * self.iters
        self.t0 = time.time()
        self.at_start: int | None = None
        self.val_score: float | None = None

    def done(self, repeat: int, epoch: int) -> int:
        """Iterations of the fold done when `repeat` has finished `epoch` epochs."""
        before = self.order[: self.order.index(int(repeat))]
        return (sum(self.epochs[r] for r in before) + int(epoch)) * self.iters

    def update(self, repeat: int, epoch: int, loss: float | None = None, val_score: float | None = None) -> None:
        done = self.done(repeat, epoch)
        if self.at_start is None:
            self.at_start = done
        if val_score is not None:
            self.val_score = float(val_score)
        state = "finished" if done >= self.total else "training"
        data = {"fold": self.fold, "repeat": int(repeat), "repeats": len(self.order), "epoch": int(epoch),
                "epochs": self.epochs[int(repeat)], "iterations_done": done, "iterations_total": self.total,
                "iterations_at_start": self.at_start, "elapsed_s": round(time.time() - self.t0, 2),
                "loss": None if loss is None else round(float(loss), 5), "val_score": self.val_score, "state": state}
        tmp = self.path.with_suffix(".json.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)


def read_status(path: str | Path) -> dict[str, Any] | None:
    """A status.json's content, None when missing or half-written."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
