"""The 11-step interactive protocol's scoring pieces: modes, the 0.5 threshold and the rows.

The protocol itself runs on an interactive session, a layer up: petclick.inference.protocol.run_protocol.

Modes:
- official: step k gets the first k tumour and the first k background clicks of the case's click
  file (the challenge's rule).
- error-driven: step 0 gets no clicks; after each step one tumour click is placed in the largest
  missed lesion and one background click in the largest false-positive component of that step's
  prediction (petclick.clicks.error_driven.next_error_clicks), as a reader correcting the model
  would; step k therefore holds at most k clicks of each kind.
- scribbles (autoPET V, the only mode of the `autopet-v` protocol): step 0 gets nothing; each
  later step adds one corrective stroke (every stroke voxel a point) on the previous prediction's
  largest axial error component (petclick.clicks.scribbles.scribble_step).
"""

from __future__ import annotations

import numpy as np

from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks

MODES = ("official", "error-driven", "scribbles")
THRESHOLD = 0.5


def to_mask(prob: np.ndarray, shape: tuple[int, ...], source: str = "predictor") -> np.ndarray:
    """Binary mask (prob >= 0.5) of a predictor's output, which must lie on the PET grid."""
    prob = np.asarray(prob)
    if prob.shape != tuple(shape):
        raise InputError(source, f"prediction shape {prob.shape} differs from the PET grid {tuple(shape)}")
    return prob >= THRESHOLD if prob.dtype != bool else prob


def protocol_row(case_id: str, tracer: str, step: int, metrics: dict, clicks: Clicks) -> dict:
    """One protocol row: case, tracer, step, the metrics (dice, fpv_ml, fnv_ml, volumes, component
    counts), n_tumor_clicks, n_background_clicks and the clicks used (lists of [i, j, k])."""
    return {"case": case_id, "tracer": tracer, "step": int(step), **metrics,
            "n_tumor_clicks": len(clicks.tumor), "n_background_clicks": len(clicks.background),
            "tumor_clicks": [list(map(int, p)) for p in clicks.tumor],
            "background_clicks": [list(map(int, p)) for p in clicks.background]}
