"""Model choice by click count: step ranges mapped to model sets, and the predictor that dispatches on them.

BIRTH (autoPET IV, task 1) uses one model for steps with 0-5 clicks and another for 6-10. Here:

    --predictor-by-step 0-5=work_dir_a 6-10=work_dir_b,work_dir_c     (command line)
    predictor_by_step: {0-5: work_dir_a, 6-10: [work_dir_b, work_dir_c]}   (YAML file; or the mapping alone)

Each value is what `get_predictor` loads (work_dirs, bundle folders, .pt files, `suv-threshold`);
relative paths of a YAML file resolve against its folder. The ranges must cover steps 0..10 once
each: an overlap or a gap is an InputError naming the source, the ranges and the steps.

The step of a click state is its click count: max(tumour clicks, background clicks), so step k of
the protocol (the first k clicks of each kind) is step k, and a state past 10 clicks (no budget)
uses the route of step 10. `StepRoutedPredictor.predict` runs the route's predictor; an
InteractiveSession keeps one engine per distinct model set (petclick/inference/session.py), so
each model's tile cache and undo journal only ever hold that model's own outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from petclick.core.errors import InputError
from petclick.core.yamlio import read_yaml
from petclick.io.clickfile import Clicks
from petclick.io.clickpolicy import BUDGET
from petclick.io.images import CaseVolumes

MAX_STEP = BUDGET                       # steps 0..10
YAML_KEY = "predictor_by_step"
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
YAML_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class StepRange:
    """Steps lo..hi (inclusive) run the model set `models` (get_predictor's spec)."""

    lo: int
    hi: int
    models: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.lo}-{self.hi}" if self.hi != self.lo else str(self.lo)


def clicks_step(clicks: Clicks) -> int:
    """The step a click state routes by: its click count, max(tumour, background), at most MAX_STEP."""
    return min(MAX_STEP, max(len(clicks.tumor), len(clicks.background)))


def _range(text: Any, source: str) -> tuple[int, int]:
    m = _RANGE.match(str(text))
    if not m:
        raise InputError(source, f"step range {text!r} is not 'LO-HI' or 'K' (steps 0..{MAX_STEP})")
    lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
    if lo > hi or hi > MAX_STEP:
        raise InputError(source, f"step range {text!r} must satisfy 0 <= LO <= HI <= {MAX_STEP}")
    return lo, hi


def _models(value: Any, source: str, key: str, base: Path | None) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else str(value).split(",") if isinstance(value, str) else None
    if items is None:
        raise InputError(source, f"step range {key}: models must be a path, a name or a list of them, got {value!r}")
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            raise InputError(source, f"step range {key}: empty model name")
        if base is not None and not Path(text).is_absolute() and (base / text).exists():
            text = str(base / text)
        out.append(text)
    if not out:
        raise InputError(source, f"step range {key}: no model given")
    return tuple(out)


def step_ranges(mapping: Mapping[Any, Any], source: str = YAML_KEY, base: Path | None = None) -> list[StepRange]:
    """The validated routes of `{range: models}`, sorted by step: every step 0..10 exactly once."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise InputError(source, "needs a non-empty mapping of step ranges to models, e.g. {0-5: dir_a, 6-10: dir_b}")
    routes = sorted((StepRange(*_range(k, source), _models(v, source, str(k), base)) for k, v in mapping.items()),
                    key=lambda r: (r.lo, r.hi))
    for a, b in zip(routes, routes[1:]):
        if b.lo <= a.hi:
            raise InputError(source, f"step ranges {a.label} and {b.label} overlap (steps {b.lo}-{min(a.hi, b.hi)})")
    covered = {s for r in routes for s in range(r.lo, r.hi + 1)}
    missing = [s for s in range(MAX_STEP + 1) if s not in covered]
    if missing:
        raise InputError(source, f"step ranges {', '.join(r.label for r in routes)} leave steps {_spans(missing)} "
                                 f"without a model (they must cover 0-{MAX_STEP})")
    return routes


def _spans(steps: Sequence[int]) -> str:
    """[0, 1, 2, 7] -> '0-2, 7'."""
    spans, start = [], steps[0]
    for a, b in zip(steps, list(steps[1:]) + [None]):
        if b != a + 1:
            spans.append(f"{start}-{a}" if a != start else str(a))
            start = b
    return ", ".join(spans)


def parse_step_routes(items: str | Path | Sequence[str] | Mapping[Any, Any], source: str = "--predictor-by-step"
                      ) -> dict[str, list[str]]:
    """The routes of a command line (`RANGE=MODELS ...`, or one YAML file), a YAML file or a mapping,
    validated, as the plain mapping `get_predictor` takes: {"0-5": [models], "6-10": [models]}."""
    base = None
    if isinstance(items, (str, Path)):
        items = [str(items)]
    if isinstance(items, Mapping):
        mapping = items
    elif len(items) == 1 and "=" not in items[0] and str(items[0]).lower().endswith(YAML_SUFFIXES):
        path = Path(items[0])
        data = read_yaml(path)
        mapping, source, base = data.get(YAML_KEY, data), str(path), path.resolve().parent
    else:
        mapping = {}
        for item in items:
            key, sep, value = str(item).partition("=")
            if not sep:
                raise InputError(source, f"{item!r} is not RANGE=MODELS (e.g. 0-5=work_dir_a) nor a YAML file")
            if key.strip() in mapping:
                raise InputError(source, f"step range {key.strip()!r} given twice")
            mapping[key.strip()] = value
    return {r.label: list(r.models) for r in step_ranges(mapping, source, base)}


class StepRoutedPredictor:
    """A predictor that runs, for each click state, the model set of its step's range (module docstring).

    `members`: one predictor per distinct model set (ranges naming the same set share it);
    `route[step]`: the member index of each step 0..10."""

    def __init__(self, routes: Sequence[StepRange], members: Mapping[tuple[str, ...], Any]):
        self.routes = list(routes)
        keys = list(dict.fromkeys(r.models for r in self.routes))
        self.members = [members[k] for k in keys]
        self.route = [keys.index(next(r.models for r in self.routes if r.lo <= s <= r.hi)) for s in range(MAX_STEP + 1)]
        self.name = "by-step(" + ", ".join(f"{r.label}: {getattr(members[r.models], 'name', '?')}"
                                           for r in self.routes) + ")"

    @property
    def spec(self) -> dict[str, list[str]]:
        """The routes as get_predictor's mapping (what a saved session or predict.json records)."""
        return {r.label: list(r.models) for r in self.routes}

    def index(self, clicks: Clicks) -> int:
        """The member that predicts `clicks` (by their step, clicks_step)."""
        return self.route[clicks_step(clicks)]

    def member(self, clicks: Clicks) -> Any:
        return self.members[self.index(clicks)]

    def predict(self, case: CaseVolumes, clicks: Clicks | None) -> np.ndarray:
        clicks = clicks or Clicks()
        return self.member(clicks).predict(case, clicks)
