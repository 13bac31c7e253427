"""Objectives of a trial, read from the training loop's validation entries
(`<bundle>/model/repeat<r>/progress.yaml`, one entry per validation with the official metrics at
the configured `clicks#val_steps`, default 0, 5, 10).

    score       max  the loop's validation score (mean Dice over steps and cases with lesions;
                     1/(1+FPV mL) when no validation case has a lesion): what progress.yaml ranks by
    dice_auc    max  trapezoid AUC of the per-step Dice over the validated steps (unit step spacing:
                     the challenge's Dice AUC when val_steps is 0..10, its piecewise-linear
                     approximation for 0, 5, 10)
    final_dice  max  Dice at the last validated step (the challenge's "final" with step 10)
    first_dice  max  Dice at the first validated step (0 clicks: automatic segmentation)
    fpv         min  mean false-positive volume (mL) over steps and cases
    fnv         min  mean false-negative volume (mL) over steps and cases

A trial's value is the objective at the validation whose checkpoint the loop kept (the best
`avg_dice_score`), averaged over the trial's repeats; intermediate values (for pruning) are the
objective at each validation of repeat 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from petclick.core.errors import InputError


def _steps(entry: Mapping[str, Any]) -> list[tuple[int, float]]:
    per = entry.get("per_step_dice") or {}
    out = sorted((int(k), float("nan") if v is None else float(v)) for k, v in per.items())
    if not out:
        raise InputError("progress.yaml", "validation entry lacks per_step_dice")
    if any(math.isnan(v) for _, v in out):
        raise InputError("progress.yaml", "per-step Dice is undefined: the fold's validation cases have no lesion; "
                                          "use --objective score or fpv, or a fold with lesions")
    return out


def _dice_auc(entry: Mapping[str, Any]) -> float:
    steps = _steps(entry)
    if len(steps) == 1:
        return steps[0][1]
    x, y = zip(*steps)
    return float(np.trapezoid(y, x))


def _field(key: str) -> Callable[[Mapping[str, Any]], float]:
    def get(entry: Mapping[str, Any]) -> float:
        value = entry.get(key)
        if value is None:
            raise InputError("progress.yaml", f"validation entry lacks {key!r} (undefined for this fold's cases)")
        return float(value)

    return get


@dataclass(frozen=True)
class Objective:
    """A named objective: its Optuna direction and how it reads one validation entry."""

    name: str
    direction: str  # "maximize" | "minimize"
    read: Callable[[Mapping[str, Any]], float]

    def better(self, a: float, b: float) -> bool:
        return a > b if self.direction == "maximize" else a < b


OBJECTIVES: dict[str, Objective] = {
    "score": Objective("score", "maximize", _field("avg_dice_score")),
    "dice_auc": Objective("dice_auc", "maximize", _dice_auc),
    "final_dice": Objective("final_dice", "maximize", lambda e: _steps(e)[-1][1]),
    "first_dice": Objective("first_dice", "maximize", lambda e: _steps(e)[0][1]),
    "fpv": Objective("fpv", "minimize", _field("fpv_ml")),
    "fnv": Objective("fnv", "minimize", _field("fnv_ml")),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise InputError("--objective", f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def kept_entry(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The validation whose checkpoint the loop kept: the first with the highest avg_dice_score
    (the loop saves model.pt only on a strict improvement)."""
    valid = [e for e in entries if e.get("avg_dice_score") is not None]
    if not valid:
        raise InputError("progress.yaml", "no validation entry: training ran no validation")
    best = valid[0]
    for e in valid[1:]:
        if float(e["avg_dice_score"]) > float(best["avg_dice_score"]):
            best = e
    return best


def trial_value(objective: Objective, repeats: Sequence[Sequence[Mapping[str, Any]]]) -> float:
    """Mean over repeats of the objective at each repeat's kept validation."""
    if not repeats:
        raise InputError("progress.yaml", "no repeat wrote validation entries")
    return float(np.mean([objective.read(kept_entry(r)) for r in repeats]))
