"""autoPET V corrective scribbles: one stroke per step on the previous prediction's largest error.

The rule of the challenge's loop (autoPETV, interactive/interactive_loop.py and
simulate_scribbles.py; facts and choices in notes/AUTOPETV.md):

1. Over-segmentation FP = pred & ~label, under-segmentation FN = label & ~pred.
2. For each, the largest 8-connected 2D component over all axial slices (the last array axis):
   the slice whose largest component is biggest (ties: the lowest slice index); inside that
   slice, ties between equally big components go to the one whose first pixel comes first in
   column-major (Fortran) order, the order cc3d numbers components of the Fortran-ordered arrays
   nibabel gives the official loop.
3. One stroke on that component (petclick.clicks.strokes: centerline, random or boundary).
4. The tumour stroke (on FN) is added when the background stroke (on FP) has the same number
   of voxels or fewer, the background stroke otherwise. An empty region gives a 0-voxel stroke,
   so a step with no FP adds the tumour stroke and a step with no FN the background stroke; a
   perfect prediction adds nothing. (The official loop crashes on both steps and scores them 0.)
5. A case whose label is empty gets no scribble at all.

Strategy per case (`case_strategies`): the challenge uses each strategy on a third of the cases
and has not published the partition; petclick deals them round-robin (centerline, random,
boundary) over the cohort's case ids in sorted order, so a cohort's assignment does not depend on
the datalist's order or on which cases a run (or a torchrun shard) happens to evaluate.

Stroke voxels are listed in C order of (i, j) on their slice k, as the official loop lists them,
and scribbles accumulate: every step appends its stroke to the previous ones (duplicates kept).
Slices are labelled one of two ways (`labelling`): "official" (default) makes the official
call, cc3d on the full slice as a Fortran-ordered bool array, so it reproduces what the installed
cc3d does there, including the faults of cc3d 3.27 to 4.1 on 2D bool images (notes/AUTOPETV.md);
"exact" uses true 8-connectivity. Work is confined to the bounding box of prediction and label
plus one voxel in-plane (official labelling rebuilds each non-empty full slice from it; exact
labelling visits slices in order of decreasing foreground count until none can hold a bigger
component).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import cc3d
import numpy as np

from petclick.core.boxes import bounding_box
from petclick.clicks.strokes import DEFAULT_SEED, STRATEGIES, draw_stroke
from petclick.io.clickset import Clicks, Point

SLICE_AXIS = 2
IN_PLANE_MARGIN = (1, 1, 0)
Plane = tuple[tuple[int, int], tuple[int, int]]  # ((rows, cols) of the full slice, (i0, j0) of the cut-out)


@dataclass(frozen=True)
class AxialComponent:
    """The chosen 2D component: its slice index and its mask on that slice; `origin` is the (i, j)
    of the mask's first pixel in the frame of the mask it was found in (negative for a full slice
    rebuilt around a cut-out)."""

    z: int
    mask: np.ndarray
    origin: tuple[int, int] = (0, 0)

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass(frozen=True)
class ScribbleStep:
    """One step of the corrective-scribble rule.

    `kind` is "tumor", "background" or None (no scribble, `reason` says why); `points` are the
    added stroke's voxels; `tumor_voxels` / `background_voxels` are the sizes of both candidate
    strokes (the official loop's `fn` and `fp`), 0 where the region is empty.
    """

    kind: str | None
    points: list[Point] = field(default_factory=list)
    z: int | None = None
    tumor_voxels: int = 0
    background_voxels: int = 0
    reason: str = ""


def _as_bool(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == bool else a != 0


def _first_in_fortran_order(labels: np.ndarray, candidates: np.ndarray) -> int:
    """Of several labels, the one whose first pixel comes first in column-major order."""
    ids, first = np.unique(labels.ravel(order="F"), return_index=True)   # first F-order index of every label
    first_of = first[np.searchsorted(ids, candidates)]
    return int(candidates[int(np.argmin(first_of))])


def _largest_exact(mask: np.ndarray, plane: Plane | None = None) -> AxialComponent | None:
    """True 8-connectivity inside the mask's box; slices in decreasing foreground count, with a bound.

    `plane` is not needed: the box keeps one voxel of the slice's zeros around the mask in-plane.
    """
    box = bounding_box(mask, margin=IN_PLANE_MARGIN)
    if box is None:
        return None
    sub = mask[box]
    counts = np.count_nonzero(sub, axis=(0, 1))
    best_area, best_z, best_labels, best_sizes = 0, -1, None, None
    for z in np.argsort(-counts, kind="stable"):
        if counts[z] == 0 or counts[z] < best_area:
            break  # no later slice can hold a component as big as the best one
        # uint8, not bool: cc3d >= 3.27 mislabels bool images in 2D with 8-connectivity.
        labels = cc3d.connected_components(np.ascontiguousarray(sub[:, :, z]).view(np.uint8), connectivity=8)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        area = int(sizes.max())
        if area > best_area or (area == best_area and z < best_z):
            best_area, best_z, best_labels, best_sizes = area, int(z), labels, sizes
    candidates = np.flatnonzero(best_sizes == best_area)
    chosen = int(candidates[0]) if len(candidates) == 1 else _first_in_fortran_order(best_labels, candidates)
    return AxialComponent(z=box[SLICE_AXIS].start + best_z, mask=best_labels == chosen,
                          origin=(box[0].start, box[1].start))


def _largest_official(mask: np.ndarray, plane: Plane | None = None) -> AxialComponent | None:
    """The official call: cc3d on every non-empty full slice as a Fortran-ordered bool array.

    That is how the official loop's arrays reach cc3d (nibabel gives Fortran order; the error
    masks are bool), so the installed cc3d labels them exactly as it labels the official loop's,
    including the 2D 8-connected bool-image faults of cc3d 3.27 to 4.1 (a label may then hold
    background pixels or part of a component). Ties: the lowest slice, then the lowest label.
    A mask cut out of a bigger volume (`plane`) is put back into its full, otherwise empty slice.
    """
    (rows, cols), (i0, j0) = plane if plane is not None else (mask.shape[:2], (0, 0))
    counts = np.count_nonzero(mask, axis=(0, 1))
    full = np.zeros((rows, cols), bool, order="F")
    window = (slice(i0, i0 + mask.shape[0]), slice(j0, j0 + mask.shape[1]))
    best_area, best = 0, None
    for z in np.flatnonzero(counts):
        full[window] = mask[:, :, z]   # outside the window the slice holds no mask voxel
        labels = cc3d.connected_components(full, connectivity=8)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        chosen = int(np.argmax(sizes))
        if sizes[chosen] > best_area:
            best_area, best = int(sizes[chosen]), (int(z), labels == chosen)
    return None if best is None else AxialComponent(z=best[0], mask=best[1], origin=(-i0, -j0))


LABELLINGS = {"official": _largest_official, "exact": _largest_exact}


def largest_axial_component(mask: np.ndarray, labelling: str = "official",
                            plane: Plane | None = None) -> AxialComponent | None:
    """The biggest 8-connected component of any axial slice of a 3D mask; None for an empty mask.

    `labelling="official"` labels slices the way the official loop does (see _largest_official),
    `"exact"` with true 8-connectivity inside the mask's bounding box grown by one voxel in-plane.
    Both agree wherever the installed cc3d labels the official call correctly. `plane` =
    ((rows, cols), (i0, j0)) says that `mask` was cut from slices of that size at that corner
    (the mask must hold every voxel of those slices, and one voxel of margin in-plane where the
    slice goes on); the component's `origin` is given in `mask`'s frame.
    """
    mask = _as_bool(mask)
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}")
    if labelling not in LABELLINGS:
        raise ValueError(f"unknown labelling {labelling!r}; expected one of {sorted(LABELLINGS)}")
    return LABELLINGS[labelling](mask, plane)


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown scribble strategy {strategy!r}; expected one of {sorted(STRATEGIES)}")


def simulate_stroke(mask: np.ndarray, strategy: str, seed: int = DEFAULT_SEED,
                    labelling: str = "official", plane: Plane | None = None) -> list[Point]:
    """The stroke the official simulator draws on a binary 3D mask: voxels (i, j, k), C order; [] if empty."""
    _check_strategy(strategy)
    comp = largest_axial_component(mask, labelling, plane)
    if comp is None:
        return []
    pixels = draw_stroke(comp.mask, strategy, seed)
    i0, j0 = comp.origin
    return [(int(i) + i0, int(j) + j0, comp.z) for i, j in pixels]


def _error_box(pred: np.ndarray, label: np.ndarray) -> tuple[slice, ...] | None:
    """Where errors can be: the union of both bounding boxes (the label's must exist), grown by one
    voxel in-plane so that strokes and slice labellings see the zeros of the full slice there."""
    lbox = bounding_box(label)
    if lbox is None:
        return None
    pbox = bounding_box(pred)
    box = lbox if pbox is None else tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(lbox, pbox))
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n)) for s, m, n in zip(box, IN_PLANE_MARGIN, label.shape))


def _offset(points: list[Point], origin: tuple[int, ...]) -> list[Point]:
    return [(i + origin[0], j + origin[1], k + origin[2]) for i, j, k in points]


def scribble_step(pred: np.ndarray, label: np.ndarray, strategy: str, seed: int = DEFAULT_SEED,
                  labelling: str = "official") -> ScribbleStep:
    """This step's corrective scribble for `pred` against `label` (binary 3D arrays of one shape)."""
    pred, label = _as_bool(pred), _as_bool(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from label shape {label.shape}")
    _check_strategy(strategy)
    if labelling not in LABELLINGS:
        raise ValueError(f"unknown labelling {labelling!r}; expected one of {sorted(LABELLINGS)}")
    box = _error_box(pred, label)
    if box is None:
        return ScribbleStep(None, reason="lesion-free case: no scribbles")
    origin = tuple(s.start for s in box)
    plane = (label.shape[:2], origin[:2])
    p, g = pred[box], label[box]
    background = _offset(simulate_stroke(p & ~g, strategy, seed, labelling, plane), origin)
    tumor = _offset(simulate_stroke(g & ~p, strategy, seed, labelling, plane), origin)
    sizes = {"tumor_voxels": len(tumor), "background_voxels": len(background)}
    if not tumor and not background:
        return ScribbleStep(None, reason="prediction equals the label: no scribble", **sizes)
    if len(background) <= len(tumor):
        return ScribbleStep("tumor", tumor, tumor[0][2], reason="tumour stroke on the largest missed region", **sizes)
    return ScribbleStep("background", background, background[0][2],
                        reason="background stroke on the largest false-positive region", **sizes)


#: The round-robin order of `case_strategies`.
STRATEGY_ORDER = ("centerline", "random", "boundary")


def case_strategies(case_ids: Iterable[str]) -> dict[str, str]:
    """Each case's stroke strategy: round-robin over the sorted case ids (one third each)."""
    return {c: STRATEGY_ORDER[n % len(STRATEGY_ORDER)] for n, c in enumerate(sorted(set(case_ids)))}


def add_scribble(previous: Clicks, step: ScribbleStep) -> Clicks:
    """Cumulative scribbles: the previous ones with this step's stroke appended to its kind."""
    out = Clicks(list(previous.tumor), list(previous.background))
    if step.kind is not None:
        getattr(out, step.kind).extend(step.points)
    return out
