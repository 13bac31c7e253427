"""The 11-step interactive protocol: run a predictor with 0..10 clicks of each kind and score each step.

Modes:
- official: step k gets the first k tumour and the first k background clicks of the case's click
  file (the challenge's rule).
- error-driven: step 0 gets no clicks; after each step one tumour click is placed in the largest
  missed lesion and one background click in the largest false-positive component of that step's
  prediction (petclick.clicks.error_driven.next_error_clicks), as a reader correcting the model
  would; step k therefore holds at most k clicks of each kind.

Predictors must be deterministic: when a step's clicks equal the previous step's (the click file
has fewer than k clicks, or the error-driven rule found nothing to correct) the previous
prediction is reused instead of running the predictor again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes, save_volume
from petclick.metrics.lesion import LesionScorer

MODES = ("official", "error-driven")
THRESHOLD = 0.5


def to_mask(prob: np.ndarray, shape: tuple[int, ...], source: str = "predictor") -> np.ndarray:
    """Binary mask (prob >= 0.5) of a predictor's output, which must lie on the PET grid."""
    prob = np.asarray(prob)
    if prob.shape != tuple(shape):
        raise InputError(source, f"prediction shape {prob.shape} differs from the PET grid {tuple(shape)}")
    return prob >= THRESHOLD if prob.dtype != bool else prob


def _error_click_fn() -> Callable[[np.ndarray, np.ndarray], dict]:
    from petclick.clicks.error_driven import next_error_clicks  # clicks part; imported only when used
    return next_error_clicks


def run_protocol(predictor, case: CaseVolumes, clicks: Clicks | None = None, mode: str = "official",
                 steps: Iterable[int] = range(11), case_id: str = "case", tracer: str = "unknown",
                 save_dir: str | Path | None = None, on_step: Callable[[int, np.ndarray, Clicks], None] | None = None,
                 ) -> list[dict]:
    """Run `predictor` through the protocol's steps on one case and score each against case.label.

    Returns one row per step: case, tracer, step, dice, fpv_ml, fnv_ml (plus volumes and component
    counts), n_tumor_clicks, n_background_clicks and the clicks used (tumor_clicks,
    background_clicks as lists of [i, j, k]). With `save_dir`, each step's mask is written as
    `<case>_pred<k>.nii.gz` (uint8, PET affine): the layout `petclick evaluate` reads. `on_step`
    is called with (step, mask, clicks) e.g. to draw a picture without keeping every mask.
    """
    if mode not in MODES:
        raise ValueError(f"unknown protocol mode {mode!r}; use one of {MODES}")
    if case.label is None:
        raise InputError(case.pet.path, f"case {case_id} has no ground-truth label: the protocol cannot score it")
    if mode == "official" and clicks is None:
        raise InputError(case.pet.path, f"case {case_id} has no click file, needed by the official protocol")
    gt = case.label.array != 0
    score = LesionScorer(gt, case.pet.spacing)
    next_clicks = _error_click_fn() if mode == "error-driven" else None
    current = Clicks()
    rows: list[dict] = []
    prev_clicks: Clicks | None = None
    mask = metrics = None
    steps = list(steps)
    for n, step in enumerate(steps):
        if mode == "official":
            current = clicks.first(step)
        if prev_clicks is None or current != prev_clicks:
            prob = predictor.predict(case, current)
            mask = to_mask(prob, case.shape, getattr(predictor, "name", "predictor"))
            metrics = score(mask)
        rows.append({"case": case_id, "tracer": tracer, "step": int(step), **metrics,
                     "n_tumor_clicks": len(current.tumor), "n_background_clicks": len(current.background),
                     "tumor_clicks": [list(map(int, p)) for p in current.tumor],
                     "background_clicks": [list(map(int, p)) for p in current.background]})
        if save_dir is not None:
            save_volume(Path(save_dir) / f"{case_id}_pred{step}.nii.gz", mask.astype(np.uint8), case.affine)
        if on_step is not None:
            on_step(int(step), mask, current)
        prev_clicks = Clicks(list(current.tumor), list(current.background))
        if mode == "error-driven" and n + 1 < len(steps):
            new = next_clicks(mask, gt) or {}
            current = Clicks(current.tumor + ([tuple(map(int, new["tumor"]))] if new.get("tumor") is not None else []),
                             current.background + ([tuple(map(int, new["background"]))] if new.get("background") is not None else []))
    return rows
