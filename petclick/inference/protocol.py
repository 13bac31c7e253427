"""The 11-step interactive protocol: a session with 0..10 clicks of each kind, each step scored.

Modes (petclick.metrics.protocol.MODES):
- official: step k gets the first k tumour and the first k background clicks of the case's click
  file (the challenge's rule).
- error-driven: step 0 gets no clicks; after each step one tumour click is placed in the largest
  missed lesion and one background click in the largest false-positive component of that step's
  mask (petclick.clicks.error_driven.next_error_clicks), as a reader correcting the model would;
  step k therefore holds at most k clicks of each kind.

The steps run on an InteractiveSession (petclick.inference.steps.run_steps), so a step whose clicks
equal the previous step's (the click file has fewer than k clicks, or the error-driven rule found
nothing to correct) computes nothing, and trained ensembles re-run only what a click changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from petclick.core.errors import InputError
from petclick.inference.session import InteractiveSession
from petclick.inference.steps import error_driven_clicks, official_clicks, run_steps
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes, save_volume
from petclick.metrics.lesion import LesionScorer
from petclick.metrics.protocol import MODES, protocol_row


def _error_click_fn() -> Callable[[np.ndarray, np.ndarray], dict]:
    from petclick.clicks.error_driven import next_error_clicks  # clicks part; imported only when used
    return next_error_clicks


def run_protocol(predictor: Any, case: CaseVolumes, clicks: Clicks | None = None, mode: str = "official",
                 steps: Iterable[int] = range(11), case_id: str = "case", tracer: str = "unknown",
                 save_dir: str | Path | None = None, on_step: Callable[[int, np.ndarray, Clicks], None] | None = None,
                 session: Mapping[str, Any] | None = None) -> list[dict]:
    """Run `predictor` (a predictor, or an InteractiveSession on `case`) through the protocol's
    steps on one case and score each against case.label.

    Returns one row per step (petclick.metrics.protocol.protocol_row). With `save_dir`, each step's
    mask is written as `<case>_pred<k>.nii.gz` (uint8, PET affine): the layout `petclick evaluate`
    reads. `on_step(step, mask, clicks)` e.g. draws a picture without keeping every mask.
    `session`: keyword arguments of the InteractiveSession built around a predictor (mode,
    postprocess, click_policy, tile_cache_mb, ...)."""
    if mode not in MODES:
        raise ValueError(f"unknown protocol mode {mode!r}; use one of {MODES}")
    if case.label is None:
        raise InputError(case.pet.path, f"case {case_id} has no ground-truth label: the protocol cannot score it")
    if mode == "official" and clicks is None:
        raise InputError(case.pet.path, f"case {case_id} has no click file, needed by the official protocol")
    gt = case.label.array != 0
    score = LesionScorer(gt, case.pet.spacing)
    if isinstance(predictor, InteractiveSession):
        s = predictor
    else:
        s = InteractiveSession(predictor, case, source=case_id, **dict(session or {}))
    schedule = official_clicks(clicks) if mode == "official" else error_driven_clicks(gt, _error_click_fn())
    rows: list[dict] = []
    metrics, scored = None, None
    for step, pred in run_steps(s, steps, schedule):
        mask = pred.mask.astype(bool)
        if pred.mask is not scored:
            metrics, scored = score(mask), pred.mask
        rows.append(protocol_row(case_id, tracer, int(step), metrics, pred.clicks))
        if save_dir is not None:
            save_volume(Path(save_dir) / f"{case_id}_pred{step}.nii.gz", pred.mask.astype(np.uint8), case.affine)
        if on_step is not None:
            on_step(int(step), mask, pred.clicks)
    return rows
