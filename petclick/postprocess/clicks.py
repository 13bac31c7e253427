"""Rule: click consistency, the guarantee a reader expects after clicking.

After this rule every tumour click lies inside the output and no background click does (a voxel
clicked as both keeps the tumour click: the reader's positive click wins).

Grow - at a tumour click outside the mask (`grow: missed`), at every tumour click by the steps
below (`always`), or at every tumour click by the SUV iso-contour (step 2, then 3; `always-suv`,
the pipeline's default: the lesion a reader clicked gets at least its 41%-of-peak extent, the
delineation readers use, joined to what the model found; `suv-replace`: within the click's ball,
the model's voxels connected to the click are replaced by that iso-contour where it is bounded, so
the iso-contour delineates a clicked lesion and the model keeps what no click touched; a later click
re-delineates what an earlier one added) - the
voxels added are, within a ball of
`max_radius_mm` around the click and connected (18) to it:
1. the voxels with `prob >= low` when the click's own probability reaches `low`; otherwise
2. the voxels with SUV >= `suv_fraction` x the peak SUV near the click (the PET iso-contour
   delineation readers use, 41% of the peak by default; the peak is the maximum within
   `peak_radius_mm` of the click), unless that region fills more than half of the ball: then
   the click is on flat uptake, not on a bounded hot lesion, and only step 3 applies; and always
3. a ball of `min_radius_mm` around the click (at least the clicked voxel itself).

Cut (a background click inside the mask) - in the component (18-connected) holding it:
- no tumour click in that component: the component is removed (the reader rejected that finding);
- tumour clicks too (a lesion merged with the bladder, say): the component is split between the
  clicks, each voxel going to its nearest click in mm; the background click's share is removed.

Every operation runs inside a click's ball or a component's bounding box (at most 10 clicks of
each kind), never over the whole volume per click.
"""

from __future__ import annotations

from typing import Sequence

import cc3d
import numpy as np

from petclick.io.clickfile import Clicks
from petclick.postprocess.components import CONNECTIVITY, clicks_inside, components

GROW_MODES = ("missed", "always", "always-suv", "suv-replace")
UNBOUNDED_FRACTION = 0.5  # an iso-contour filling more of the ball than this is flat uptake, not a lesion


def _ball_box(p: Sequence[int], radius_mm: float, spacing: np.ndarray, shape) -> tuple[tuple[slice, ...], np.ndarray]:
    """Box around p holding a ball of radius_mm, and the ball itself as a boolean array over that box."""
    half = np.floor(radius_mm / spacing).astype(int)
    lo = np.maximum(np.asarray(p) - half, 0)
    hi = np.minimum(np.asarray(p) + half + 1, shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    grid = np.ogrid[box]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, p, spacing))
    return box, d2 <= radius_mm ** 2 + 1e-9


def _connected_to(region: np.ndarray, point: Sequence[int]) -> np.ndarray:
    """The 18-connected part of `region` holding `point` (empty when the point is outside it)."""
    if not region[tuple(point)]:
        return np.zeros_like(region)
    labels = cc3d.connected_components(region.view(np.uint8), connectivity=CONNECTIVITY)
    return labels == labels[tuple(point)]


def grow_region(p: Sequence[int], pet: np.ndarray, prob: np.ndarray | None, spacing: np.ndarray, low: float,
                max_radius_mm: float, min_radius_mm: float, suv_fraction: float, peak_radius_mm: float
                ) -> tuple[tuple[slice, ...], np.ndarray]:
    """The region a tumour click at p adds (box, boolean array over the box); see the module docstring."""
    box, region, _ = _grow(p, pet, prob, spacing, low, max_radius_mm, min_radius_mm, suv_fraction, peak_radius_mm)
    return box, region


def _grow(p: Sequence[int], pet: np.ndarray, prob: np.ndarray | None, spacing: np.ndarray, low: float,
          max_radius_mm: float, min_radius_mm: float, suv_fraction: float, peak_radius_mm: float
          ) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray | None]:
    """grow_region's (box, region), and the click's ball (a boolean array over the box) where a bounded
    SUV iso-contour made the region; None where the prob region, no uptake or flat uptake did."""
    box, ball = _ball_box(p, max(max_radius_mm, min_radius_mm), spacing, pet.shape)
    local = tuple(int(c - s.start) for c, s in zip(p, box))
    iso = None
    if prob is not None and prob[tuple(p)] >= low:
        region = _connected_to(ball & (prob[box] >= low), local)
    else:
        pbox, peak_ball = _ball_box(p, peak_radius_mm, spacing, pet.shape)
        peak = float(pet[pbox][peak_ball].max())
        region = _connected_to(ball & (pet[box] >= suv_fraction * peak), local) if peak > 0 else np.zeros_like(ball)
        if np.count_nonzero(region) > UNBOUNDED_FRACTION * np.count_nonzero(ball):
            region = np.zeros_like(ball)
        elif region.any():
            iso = region.copy()
    grid = np.ogrid[box]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, p, spacing))
    region |= d2 <= min_radius_mm ** 2 + 1e-9
    region[local] = True
    return box, region, (None if iso is None else ball)


def _nearest_d2(points: list, box: tuple[slice, ...], spacing: np.ndarray) -> np.ndarray:
    """Squared mm distance from every voxel of `box` to the nearest of `points` (inf when none)."""
    grid = np.ogrid[box]
    best = np.full(tuple(s.stop - s.start for s in box), np.inf)
    for p in points:
        best = np.minimum(best, sum(((g - c) * s) ** 2 for g, c, s in zip(grid, p, spacing)))
    return best


def enforce_clicks(mask: np.ndarray, clicks: Clicks, pet: np.ndarray, spacing: Sequence[float],
                   prob: np.ndarray | None = None, low: float = 0.2, max_radius_mm: float = 40.0,
                   min_radius_mm: float = 0.0, suv_fraction: float = 0.41, peak_radius_mm: float = 5.0,
                   grow: str = "missed") -> np.ndarray:
    """Grow at missed tumour clicks (`grow: always`: at every tumour click; `always-suv`: at every
    tumour click by the SUV iso-contour), then cut at covered background clicks (module docstring)."""
    if grow not in GROW_MODES:
        raise ValueError(f"click_consistency.grow must be one of {GROW_MODES}, got {grow!r}")
    out = np.array(mask, bool, copy=True)
    spacing = np.asarray(spacing, float)
    tumour = clicks_inside(clicks.tumor, out.shape)
    background = clicks_inside(clicks.background, out.shape)
    suv_only = grow in ("always-suv", "suv-replace")
    for p in tumour:
        if grow != "missed" or not out[p]:
            box, region, ball = _grow(p, pet, None if suv_only else prob, spacing, low, max_radius_mm,
                                      min_radius_mm, suv_fraction, peak_radius_mm)
            if grow == "suv-replace" and ball is not None:  # a bounded iso-contour delineates this lesion
                # the mask's voxels connected to the click give way, an earlier click's region included: the
                # later click re-delineates from its own peak (6.46 against 6.30 Dice AUC at the demo scale
                # when earlier regions were kept; docs/benchmarks/quality.md); the clicked voxels return below
                local = tuple(int(c - s.start) for c, s in zip(p, box))
                out[box] &= ~_connected_to(out[box] & ball, local)
            out[box] |= region
    covered = [q for q in background if out[q]]
    if not covered:
        for p in tumour:
            out[p] = True
        return out
    comp = components(out)
    boxes = comp.boxes()
    tumour_labels = comp.at(tumour)
    for c in np.unique(comp.at(covered)):
        box = boxes[c]
        inside = comp.labels[box] == c
        t_here = [p for p, lab in zip(tumour, tumour_labels) if lab == c]
        if not t_here:
            out[box][inside] = False
            continue
        b_here = [q for q in covered if comp.labels[q] == c]
        origin = [s.start for s in box]
        rel = lambda pts: [tuple(a - o for a, o in zip(pt, origin)) for pt in pts]  # noqa: E731
        drop = inside & (_nearest_d2(rel(b_here), tuple(slice(0, s.stop - s.start) for s in box), spacing)
                         < _nearest_d2(rel(t_here), tuple(slice(0, s.stop - s.start) for s in box), spacing))
        out[box][drop] = False
    for p in tumour:  # a voxel clicked as both stays in (the positive click wins)
        out[p] = True
    return out
