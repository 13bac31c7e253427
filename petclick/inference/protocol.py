"""The interactive protocols: a session through a challenge edition's steps, each step scored.

`protocol` names the edition (petclick.metrics.editions): autopet-iv (11 steps, 0..10 clicks of
each kind, Dice/FPV/FNV) or autopet-v (6 steps by default, corrective scribbles, Dice with
empty/empty = 1, DMM, FPV, FNV). Modes (petclick.metrics.protocol.MODES):
- official: step k gets the first k tumour and the first k background clicks of the case's click
  file (the challenge's rule).
- error-driven: step 0 gets no clicks; after each step one tumour click is placed in the largest
  missed lesion and one background click in the largest false-positive component of that step's
  mask (petclick.clicks.error_driven.next_error_clicks), as a reader correcting the model would;
  step k therefore holds at most k clicks of each kind.
- scribbles (autopet-v): step 0 gets nothing; each later step appends one stroke drawn on the
  previous step's mask by the official rule (petclick.clicks.scribbles.scribble_step, seed 42),
  with the case's stroke `strategy` (centerline, random or boundary); every stroke voxel is a
  point of its kind. A perfect prediction adds nothing, so the step recomputes nothing and
  records the same mask (the official loop crashes there and scores 0).

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
from petclick.inference.steps import error_driven_clicks, official_clicks, run_steps, scribble_clicks
from petclick.io.clickfile import Clicks, write_clicks
from petclick.io.images import CaseVolumes, save_volume
from petclick.metrics.editions import edition
from petclick.metrics.protocol import MODES, protocol_row


def _error_click_fn() -> Callable[[np.ndarray, np.ndarray], dict]:
    from petclick.clicks.error_driven import next_error_clicks  # clicks part; imported only when used
    return next_error_clicks


def run_protocol(predictor: Any, case: CaseVolumes, clicks: Clicks | None = None, mode: str | None = None,
                 steps: Iterable[int] | None = None, case_id: str = "case", tracer: str = "unknown",
                 save_dir: str | Path | None = None, on_step: Callable[[int, np.ndarray, Clicks], None] | None = None,
                 session: Mapping[str, Any] | None = None, protocol: str = "autopet-iv",
                 strategy: str = "centerline", seed: int | None = None) -> list[dict]:
    """Run `predictor` (a predictor, or an InteractiveSession on `case`) through the protocol's
    steps on one case and score each against case.label.

    `mode` defaults to the edition's first (official; scribbles for autopet-v), `steps` to its
    range(n_steps). Returns one row per step (petclick.metrics.protocol.protocol_row; autopet-v
    rows add dmm and its counts). With `save_dir`, each step's mask is written as
    `<case>_pred<k>.nii.gz` (uint8, PET affine): the layout `petclick evaluate` reads; autopet-v
    also writes the cumulative scribbles as `<case>_scribbles<k>.json` (the official
    `iter_<k>_scribbles.json` content). `on_step(step, mask, clicks)` e.g. draws a picture without
    keeping every mask. `session`: keyword arguments of the InteractiveSession built around a
    predictor (mode, postprocess, click_policy, tile_cache_mb, ...); `strategy` / `seed`: the
    scribble strokes (mode scribbles)."""
    ed = edition(protocol)
    mode = ed.modes[0] if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"unknown protocol mode {mode!r}; use one of {MODES}")
    if mode not in ed.modes:
        raise ValueError(f"protocol {protocol} runs mode(s) {list(ed.modes)}, not {mode!r}")
    steps = range(ed.n_steps) if steps is None else steps
    if case.label is None:
        raise InputError(case.pet.path, f"case {case_id} has no ground-truth label: the protocol cannot score it")
    if mode == "official" and clicks is None:
        raise InputError(case.pet.path, f"case {case_id} has no click file, needed by the official protocol")
    gt = case.label.array != 0
    score = ed.scorer(gt, case.pet.spacing)
    if isinstance(predictor, InteractiveSession):
        s = predictor
    else:
        s = InteractiveSession(predictor, case, source=case_id, **{"budget": ed.budget, **dict(session or {})})
    if mode == "official":
        schedule = official_clicks(clicks)
    elif mode == "scribbles":
        schedule = scribble_clicks(gt, strategy, seed)
    else:
        schedule = error_driven_clicks(gt, _error_click_fn())
    rows: list[dict] = []
    metrics, scored = None, None
    for step, pred in run_steps(s, steps, schedule):
        mask = pred.mask.astype(bool)
        if pred.mask is not scored:
            metrics, scored = score(mask), pred.mask
        rows.append(protocol_row(case_id, tracer, int(step), metrics, pred.clicks))
        if save_dir is not None:
            save_volume(Path(save_dir) / f"{case_id}_pred{step}.nii.gz", pred.mask.astype(np.uint8), case.affine)
            if mode == "scribbles":
                write_clicks(Path(save_dir) / f"{case_id}_scribbles{step}.json", pred.clicks)
        if on_step is not None:
            on_step(int(step), mask, pred.clicks)
    return rows
