"""The challenge editions petclick scores: their step count, metric set, scorer and report wording.

- autopet-iv: 11 steps (0..10 clicks of each kind); Dice (NaN for an empty ground truth), FPV,
  FNV; LesionScorer; protocol modes official and error-driven (clicks).
- autopet-v: 6 steps by default (an initial prediction and 5 corrective scribble steps, as the
  challenge's README states; its loop's own default is 5, so the count is a parameter); Dice
  (1 when both masks are empty), DMM, FPV, FNV; DetectionScorer; protocol mode scribbles.

A new edition is one registry entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from petclick.io.clickpolicy import BUDGET
from petclick.metrics.aggregate import METRICS, NAN_POLICY
from petclick.metrics.detection import DetectionScorer
from petclick.metrics.lesion import LesionScorer


@dataclass(frozen=True)
class Edition:
    """How one challenge edition is scored and reported."""

    name: str
    n_steps: int
    metrics: tuple[str, ...]
    scorer: Callable  # (ground truth, spacing) -> callable(prediction) -> metric row
    nan_policy: str
    step_label: str
    modes: tuple[str, ...]  # the interactive protocol's modes (petclick.metrics.protocol.MODES), default first
    budget: int | None      # inputs of each kind a step may hold (None: any number, as scribble voxels)


EDITIONS = {
    "autopet-iv": Edition("autopet-iv", 11, METRICS, LesionScorer, NAN_POLICY, "clicks of each kind (step)",
                          ("official", "error-driven"), BUDGET),
    "autopet-v": Edition(
        "autopet-v", 6, ("dice", "dmm", "fpv", "fnv"), DetectionScorer,
        "Dice is 1 when prediction and ground truth are both empty and 0 for any prediction on an empty ground "
        "truth, so lesion-free cases count in Dice means. DMM and FNV are undefined (NaN) for cases whose ground "
        "truth is empty; means and medians exclude them, and `n` gives how many cases each statistic was taken over.",
        "interaction step", ("scribbles",), None),
}


def edition(name: str) -> Edition:
    """The registered edition called `name` (ValueError naming the known ones otherwise)."""
    if name not in EDITIONS:
        raise ValueError(f"unknown protocol {name!r}; expected one of {sorted(EDITIONS)}")
    return EDITIONS[name]
