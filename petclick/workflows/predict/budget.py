"""Time-budget planning: how many checkpoints and mirror-TTA axes fit in a time budget.

The planner is a pure function of one measurement (seconds of one sliding-window pass of one
checkpoint, measured on the first model and case) and the budget, so it is testable without a
model. Cost model: a case costs n_predictions x n_models x passes(axes) x seconds_per_pass, where
passes(axes) = 2 ** len(axes) for mirror TTA over every combination of the flipped axes
(nnU-Net-style mirroring; `tta="single"` counts one extra pass per axis instead).

Choice: ensemble members first (independent models improve more than mirrored passes of the same
model), then mirror axes in the order given (default 0, 1, 2), each only when everything chosen
still fits. When not even one checkpoint without TTA fits, the plan is one checkpoint, no TTA,
flagged `fits=False` (a prediction is always made).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

DEFAULT_AXES = (0, 1, 2)


@dataclass(frozen=True)
class Plan:
    """The chosen ensemble size and mirror axes, with the estimated seconds and whether it fits."""

    n_models: int
    tta_axes: tuple[int, ...]
    estimated_s: float
    fits: bool


def tta_passes(n_axes: int, tta: str = "combinations") -> int:
    """Forward passes per checkpoint for mirror TTA over n_axes axes."""
    if tta == "combinations":
        return 2 ** n_axes
    if tta == "single":
        return 1 + n_axes
    raise ValueError(f"unknown TTA cost model {tta!r}; use 'combinations' or 'single'")


def plan_budget(seconds_per_pass: float, budget_s: float, n_models: int, n_predictions: int = 1,
                axes: Sequence[int] = DEFAULT_AXES, tta: str = "combinations") -> Plan:
    """Most checkpoints, then most mirror axes, whose estimated time fits `budget_s` (see module docstring)."""
    if n_models < 1:
        raise ValueError("n_models must be >= 1")
    if seconds_per_pass < 0 or n_predictions < 1:
        raise ValueError("seconds_per_pass must be >= 0 and n_predictions >= 1")

    def cost(m: int, n_axes: int) -> float:
        return n_predictions * m * tta_passes(n_axes, tta) * seconds_per_pass

    fitting = [m for m in range(1, n_models + 1) if cost(m, 0) <= budget_s]
    if not fitting:
        return Plan(1, (), cost(1, 0), False)
    m = max(fitting)
    n_axes = 0
    if m == n_models:
        while n_axes < len(axes) and cost(m, n_axes + 1) <= budget_s:
            n_axes += 1
    return Plan(m, tuple(axes[:n_axes]), cost(m, n_axes), True)
