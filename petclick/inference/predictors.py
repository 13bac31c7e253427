"""Predictors: what the interactive protocol runs. A protocol, a baseline and a factory.

A predictor has a `.name` and `.predict(case, clicks) -> np.ndarray`: float32 probabilities (or
0/1) on the PET grid; the protocol thresholds them at 0.5. `get_predictor` is the one loader of
every command, session and bundle: a built-in name, or trained models through
`petclick.inference.predictor.load_model_predictor` (imported only when a path is given), or a
mapping of step ranges to either (petclick.inference.routing: model choice by click count).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import cc3d
import numpy as np

from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes

log = logging.getLogger(__name__)


@runtime_checkable
class Predictor(Protocol):
    """Anything the protocol can run: a name and a prediction on the PET grid for given clicks."""

    name: str

    def predict(self, case: CaseVolumes, clicks: Clicks) -> np.ndarray:
        ...


class SuvThresholdPredictor:
    """The baseline every model must beat: an SUV threshold edited by clicks.

    mask = PET >= `threshold` (SUV 2.5 by default). Components are 26-connected (uptake regions
    touching at an edge or a corner are one region, so one click takes or removes all of it).
    - no tumour click: every component is kept (step 0 is the plain threshold), minus the
      components a background click falls in;
    - tumour clicks: only the components holding a tumour click are kept;
    - a component holding both a tumour and a background click (a lesion merged with the bladder,
      say) is split between them: each of its voxels goes to the nearest click (in mm) and is kept
      when that click is a tumour click.
    Clicks on voxels below the threshold do nothing.
    """

    def __init__(self, threshold: float = 2.5, connectivity: int = 26):
        if connectivity not in (6, 18, 26):
            raise ValueError("connectivity must be 6, 18 or 26")
        self.threshold = float(threshold)
        self.connectivity = connectivity
        self.name = "suv-threshold" if threshold == 2.5 else f"suv-threshold-{threshold:g}"
        self._cache: tuple | None = None  # (PET array, labels, n, bounding boxes)

    def _labels(self, pet: np.ndarray) -> tuple[np.ndarray, int, list]:
        """Components of the thresholded PET and their bounding boxes, cached per PET array
        (the 11 protocol steps share one labelling)."""
        if self._cache is not None and self._cache[0] is pet:
            return self._cache[1:]
        mask = np.ascontiguousarray(pet >= self.threshold).view(np.uint8)
        n_fg = int(np.count_nonzero(mask))
        if n_fg == 0:
            labels, n, boxes = np.zeros(pet.shape, np.uint8), 0, [None]
        else:
            labels, n = cc3d.connected_components(mask, connectivity=self.connectivity, return_N=True, max_labels=n_fg)
            boxes = cc3d.statistics(labels)["bounding_boxes"]
        self._cache = (pet, labels, int(n), boxes)
        return labels, int(n), boxes

    def predict(self, case: CaseVolumes, clicks: Clicks) -> np.ndarray:
        pet = case.pet.array
        labels, n, boxes = self._labels(pet)
        tumour = _labels_at(labels, clicks.tumor)
        background = _labels_at(labels, clicks.background)
        if tumour.size == 0:
            out = (labels > 0).astype(np.float32)
            for c in background:
                box = boxes[c]
                out[box][labels[box] == c] = 0.0
            return out
        out = np.zeros(pet.shape, np.float32)
        spacing = np.asarray(case.pet.spacing)
        for c in tumour:
            box = boxes[c]
            inside = labels[box] == c
            if c in background:
                inside &= _nearer_tumour(box, inside.shape, clicks, labels, c, spacing)
            out[box][inside] = 1.0
        return out


def _nearer_tumour(box, shape, clicks: Clicks, labels: np.ndarray, c: int, spacing: np.ndarray) -> np.ndarray:
    """Within a bounding box: voxels nearer (mm) to a tumour click than to a background click of component c."""
    origin = np.array([s.start for s in box])

    def nearest(points) -> np.ndarray:
        pts = [p for p in points if labels[tuple(p)] == c]
        grid = np.ogrid[tuple(slice(0, s) for s in shape)]
        best = np.full(shape, np.inf)
        for p in pts:
            d2 = sum(((g + o - q) * sp) ** 2 for g, o, q, sp in zip(grid, origin, p, spacing))
            best = np.minimum(best, d2)
        return best

    return nearest(clicks.tumor) <= nearest(clicks.background)


def _labels_at(labels: np.ndarray, points) -> np.ndarray:
    """Distinct non-zero component labels under the given (i, j, k) points."""
    if not points:
        return np.zeros(0, np.int64)
    idx = np.asarray(points, dtype=np.int64).reshape(-1, 3)
    values = labels[idx[:, 0], idx[:, 1], idx[:, 2]].astype(np.int64)
    return np.unique(values[values > 0])


BUILTIN = {"suv-threshold": SuvThresholdPredictor}
_LOADED: dict[tuple, Predictor] = {}


def get_predictor(models: str | Path | Sequence[str | Path] | Mapping[str, Any], device: str = "cpu",
                  algo_weights: Mapping[str, float] | None = None, threshold: float = 2.5, cached: bool = False,
                  **kwargs) -> Predictor:
    """petclick's one predictor loader: a built-in predictor by name ("suv-threshold", SUV
    `threshold`) or the streamed ensemble of every checkpoint under the paths (AutoRunner work_dir,
    bundle folders, model folders, .pt files) through
    petclick.inference.predictor.load_model_predictor(paths, device=..., algo_weights=..., **kwargs)
    (None weights: a work_dir's input.yaml `ensemble_weights`). `cached`: one predictor per
    (models, settings) per process (Auto3DSeg builds an InferClass per file and algorithm).
    A mapping `{"0-5": models_a, "6-10": models_b}` (petclick.inference.routing.parse_step_routes)
    gives a StepRoutedPredictor whose model sets are each loaded here with the same settings."""
    if isinstance(models, Mapping):
        return _step_routed(models, device=device, algo_weights=algo_weights, threshold=threshold, cached=cached,
                            **kwargs)
    items = [models] if isinstance(models, (str, Path)) else list(models)
    if not items:
        raise InputError(None, "no model given")
    names = [str(m) for m in items]
    if len(names) == 1 and names[0] in BUILTIN:
        if algo_weights is not None:
            log.warning("--algo-weights ignored: %s is not an ensemble", names[0])
        return BUILTIN[names[0]](threshold=threshold)
    for m in names:
        if m in BUILTIN:
            raise InputError(m, "a built-in predictor cannot be ensembled with checkpoints")
        if not Path(m).exists():
            raise InputError(m, "unknown predictor: model folder or checkpoint not found, and not a built-in "
                                f"name ({', '.join(BUILTIN)})")
    key = (tuple(names), str(device), repr(sorted((algo_weights or {}).items())), repr(sorted(kwargs.items())))
    if cached and key in _LOADED:
        return _LOADED[key]
    from petclick.inference.predictor import load_model_predictor  # torch-heavy, so lazy

    path = items[0] if len(items) == 1 else [Path(m) for m in items]
    extra = {"algo_weights": algo_weights} if algo_weights is not None else {}
    predictor = load_model_predictor(path, device=device, **extra, **kwargs)
    if cached:
        _LOADED[key] = predictor
    return predictor


def _step_routed(mapping: Mapping, **settings) -> Predictor:
    """The StepRoutedPredictor of a validated `{range: models}` mapping, each distinct model set loaded once."""
    from petclick.inference.routing import StepRoutedPredictor, step_ranges

    routes = step_ranges(mapping)
    members = {r.models: get_predictor(list(r.models), **settings) for r in routes}
    return StepRoutedPredictor(routes, members)
