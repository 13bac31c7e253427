"""Fewer checkpoints: the K of an ensemble whose mean agrees best with the whole ensemble, chosen
on validation cases (never the cases they are then measured on).

`choose_subset` runs every checkpoint once per validation case and click state (no clicks, and
all the case's clicks: the protocol's first and last steps), keeps each probability as 8 bits,
and adds checkpoints greedily: each round the one whose addition gives the subset mean whose mask
(prob >= 0.5) has the highest mean Dice against the whole ensemble's mask. The result (ordered by
when each was chosen, so its first k are the best k found) goes to a session as `checkpoints`
(every click on K checkpoints) or `fast_checkpoints` (the fast step 0), and is written as JSON by
`write_subset` / read by `read_subset` (paths relative to the file's folder where they lie below it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.inference.predictor import EnsemblePredictor
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def choose_subset(predictor: EnsemblePredictor, cases: Sequence[tuple[CaseVolumes, Clicks]], k: int) -> list[Path]:
    """The `k` checkpoints of `predictor` chosen greedily on the validation `cases` (module docstring)."""
    ckpts = list(predictor.checkpoints)
    if not 1 <= int(k) <= len(ckpts):
        raise InputError("subset", f"k must lie in 1..{len(ckpts)}, got {k}")
    if not cases:
        raise InputError("subset", "no validation case")
    states = [(case, c) for case, clicks in cases for c in (Clicks(), clicks)]
    probs = [[np.round(predictor.predict_with([p], (), case, c) * 255).astype(np.uint8) for case, c in states]
             for p in ckpts]                                             # [checkpoint][state] 8-bit probability
    full = [np.mean([probs[i][s] for i in range(len(ckpts))], axis=0, dtype=np.float32) >= 127.5
            for s in range(len(states))]
    chosen: list[int] = []
    sums = [np.zeros(full[s].shape, np.float32) for s in range(len(states))]
    for _ in range(int(k)):
        best, best_score = None, -1.0
        for i in range(len(ckpts)):
            if i in chosen:
                continue
            n = len(chosen) + 1
            score = float(np.mean([_dice((sums[s] + probs[i][s]) / n >= 127.5, full[s]) for s in range(len(states))]))
            if score > best_score:
                best, best_score = i, score
        chosen.append(best)
        for s in range(len(states)):
            sums[s] += probs[best][s]
    return [ckpts[i] for i in chosen]


def write_subset(path: str | Path, checkpoints: Sequence[Path]) -> Path:
    """The chosen checkpoints as JSON (paths relative to the file's folder where they lie below it)."""
    path = Path(path)
    root = path.parent.resolve()
    items = []
    for c in checkpoints:
        c = Path(c).resolve()
        items.append(str(c.relative_to(root)) if c.is_relative_to(root) else str(c))
    return atomic_write_text(path, json.dumps({"checkpoints": items}, indent=1) + "\n")


def read_subset(path: str | Path) -> list[Path]:
    """The checkpoints a `write_subset` file names (relative ones below its folder); a bad file raises InputError."""
    path = Path(path)
    try:
        items = json.loads(path.read_text())["checkpoints"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"not a checkpoint subset file ({exc})") from exc
    out = [Path(i) if Path(i).is_absolute() else path.parent / i for i in items]
    missing = [str(p) for p in out if not p.is_file()]
    if missing:
        raise InputError(path, f"checkpoint(s) not found: {', '.join(missing)}")
    return out
