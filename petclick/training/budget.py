"""A fold's training sized to a wall-clock budget (YAML `training.time_budget_s`).

The recipe's iterations are fixed in the config, but machines of one kind differ by 2-3x (a
2-core AVX2-only EPYC trains the demo 2.5x slower than the machine its recipe was sized on).
With a budget, the loop measures this machine before it trains: a few real optimiser steps on
real batches (data loading, click simulation and augmentation included) and one validation case,
then scales `training.num_iterations_per_epoch` so that every repeat's epochs, the validations
and the time already spent in this process fit the budget. Epoch counts, the learning-rate
schedule's shape and the validation schedule stay the recipe's; only the iterations of an epoch
change, never above the recipe's own (`time_budget_max_scale`, default 1) and never below one.
The probe's steps train a throw-away copy of the network, so a budgeted run and an unbudgeted
one start from the same weights.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

log = logging.getLogger("petclick.training")
PROBE_STEPS = 6
PROBE_WARMUP = 2
#: Time kept back for what the estimate misses (checkpoint writes, the last epoch's stragglers).
SAFETY = 0.05


@dataclass(frozen=True)
class BudgetPlan:
    """What the budget decided, as logged and written next to the checkpoints."""

    budget_s: float
    elapsed_s: float
    step_s: float
    validation_case_s: float
    validations: int
    validation_cases: int
    epochs: int
    recipe_iterations_per_epoch: int
    iterations_per_epoch: int
    scale: float
    predicted_s: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def process_elapsed() -> float:
    """Seconds since this process started (imports included), from /proc; 0 where that is unavailable."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = float(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        return max(0.0, time.time() - (boot + start_ticks / os.sysconf("SC_CLK_TCK")))
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0


def validation_count(epochs: list[int], val_every: int) -> int:
    """Validations of the repeats: every `val_every` epochs and at each repeat's end."""
    return sum(len({*range(val_every, e + 1, val_every), e}) for e in epochs)


def plan_budget(budget_s: float, elapsed_s: float, step_s: float, validation_case_s: float, epochs: list[int],
                val_every: int, validation_cases: int, recipe_iterations: int, max_scale: float = 1.0) -> BudgetPlan:
    """The iterations per epoch that make the repeats' `epochs`, their validations and `elapsed_s` fit `budget_s`."""
    validations = validation_count(epochs, val_every)
    val_s = validations * validation_cases * validation_case_s
    usable = budget_s * (1.0 - SAFETY) - elapsed_s - val_s
    per_iteration = max(1e-6, sum(epochs) * step_s)
    fit = max(1, math.floor(usable / per_iteration)) if usable > 0 else 1
    iterations = max(1, min(fit, math.floor(recipe_iterations * max_scale)))
    predicted = elapsed_s + val_s + iterations * per_iteration
    return BudgetPlan(float(budget_s), float(elapsed_s), float(step_s), float(validation_case_s), validations,
                      int(validation_cases), int(sum(epochs)), int(recipe_iterations), int(iterations),
                      iterations / max(1, recipe_iterations), float(predicted))


def time_steps(step: Callable[[], Any], steps: int = PROBE_STEPS, warmup: int = PROBE_WARMUP) -> float:
    """Median seconds of `step()` over `steps` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def budget_settings(training: Mapping[str, Any]) -> tuple[float | None, float]:
    """(budget in seconds or None, max scale) from a training section."""
    budget = training.get("time_budget_s")
    return (None if budget in (None, 0) else float(budget)), float(training.get("time_budget_max_scale", 1.0))
