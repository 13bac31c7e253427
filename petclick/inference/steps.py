"""The one step loop of petclick: a session through a sequence of click steps.

`petclick predict` (its steps of a click file), `petclick gc` and bundle inference (one step with
the clicks given), the interactive protocol (official and error-driven) all run
`run_steps(session, steps, clicks_at)`: for each step the session gets that step's clicks and
predicts; a step whose clicks equal the previous step's computes nothing.

`clicks_at(step, previous_prediction) -> Clicks` says which clicks a step has:
- `official_clicks(clicks)`: step k the first k of each kind (None: all of them);
- `error_driven_clicks(label)`: step 0 none; then the previous step's clicks plus one tumour click
  in the largest missed lesion and one background click in the largest false-positive component
  of the previous step's mask (petclick.clicks.error_driven.next_error_clicks);
- `scribble_clicks(label, strategy)` (autoPET V): step 0 none; then the previous step's scribbles
  plus one corrective stroke on the previous step's largest axial error component, every stroke
  voxel a point (petclick.clicks.scribbles.scribble_step, seed 42 as the official loop).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from petclick.inference.session import InteractiveSession, Prediction
from petclick.io.clickfile import Clicks

ClicksAt = Callable[[int | None, Prediction | None], Clicks]


def official_clicks(clicks: Clicks | None) -> ClicksAt:
    """Step k: the first k clicks of each kind of `clicks`; step None: all of them."""
    clicks = clicks or Clicks()
    return lambda step, previous: clicks if step is None else clicks.first(int(step))


def error_driven_clicks(label: np.ndarray, next_clicks: Callable[[np.ndarray, np.ndarray], dict] | None = None) -> ClicksAt:
    """Step 0: no clicks; each later step adds the corrections of the previous step's errors."""
    if next_clicks is None:
        from petclick.clicks.error_driven import next_error_clicks as next_clicks
    gt = np.asarray(label) != 0

    def at(step, previous: Prediction | None) -> Clicks:
        if previous is None:
            return Clicks()
        new = next_clicks(previous.mask.astype(bool), gt) or {}
        c = previous.clicks
        return Clicks(c.tumor + ([tuple(map(int, new["tumor"]))] if new.get("tumor") is not None else []),
                      c.background + ([tuple(map(int, new["background"]))] if new.get("background") is not None else []))
    return at


def scribble_clicks(label: np.ndarray, strategy: str, seed: int | None = None) -> ClicksAt:
    """Step 0: no scribbles; each later step appends the corrective stroke of the previous step's
    errors (nothing on a perfect prediction or a lesion-free label, so the step computes nothing)."""
    from petclick.clicks.scribbles import add_scribble, scribble_step
    from petclick.clicks.strokes import DEFAULT_SEED

    gt = np.asarray(label) != 0
    seed = DEFAULT_SEED if seed is None else int(seed)

    def at(step, previous: Prediction | None) -> Clicks:
        if previous is None:
            return Clicks()
        return add_scribble(previous.clicks, scribble_step(previous.mask, gt, strategy, seed))
    return at


def run_steps(session: InteractiveSession, steps: Iterable[int | None], clicks_at: ClicksAt
              ) -> Iterator[tuple[int | None, Prediction]]:
    """(step, prediction) for each step: the session gets `clicks_at(step, previous)` and predicts."""
    previous: Prediction | None = None
    for step in steps:
        session.set_clicks(clicks_at(step, previous))
        previous = session.predict()
        yield step, previous
