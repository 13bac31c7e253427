"""Error-driven clicks: where a reader correcting a prediction would click next.

A missed lesion part (label and not prediction) calls for a tumour click, a false positive
(prediction and not label) for a background click. Each goes to the maximum-EDT voxel (first
maximum in C order) of the largest error component (26-connectivity, largest by voxel count,
ties: the component cc3d numbers first) so that the click sits deep inside the error, where it
is unambiguous. Used by the error-driven evaluation protocol and optionally iterative training.
"""

from __future__ import annotations

import numpy as np

from petclick.clicks.simulate import Components
from petclick.io.clickfile import Point

THRESHOLD = 0.5


def _as_mask(array, name: str) -> np.ndarray:
    """Boolean mask of a 3D array or tensor (CPU or GPU): bool as is, numbers >= 0.5 (probabilities and 0/1 labels alike)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"{name} must be a 3D array, got shape {array.shape}")
    return array if array.dtype == bool else array >= THRESHOLD


def largest_component_centre(mask: np.ndarray) -> tuple[Point, int] | None:
    """(max-EDT voxel, voxel count) of the largest 26-connected component of `mask`; None when empty.

    The EDT is computed inside the component's padded bounding box only.
    """
    comps = Components(mask)
    if len(comps) == 0:
        return None
    index = int(np.argmax(comps.sizes))
    region = comps.region(index)
    edt = region.edt()
    local = np.unravel_index(int(np.argmax(edt)), edt.shape)
    point = tuple(int(o + c) for o, c in zip(region.origin, local))
    return point, int(comps.sizes[index])  # type: ignore[return-value]


def _errors(pred, label) -> dict[str, tuple[Point, int]]:
    pred_m, label_m = _as_mask(pred, "pred"), _as_mask(label, "label")
    if pred_m.shape != label_m.shape:
        raise ValueError(f"prediction {pred_m.shape} and label {label_m.shape} must have one shape")
    out = {}
    for kind, error in (("tumor", label_m & ~pred_m), ("background", pred_m & ~label_m)):
        found = largest_component_centre(error)
        if found is not None:
            out[kind] = found
    return out


def next_error_clicks(pred, label) -> dict[str, Point]:
    """{"tumor": (i,j,k)} for the largest missed-lesion component and {"background": (i,j,k)} for the
    largest false-positive component, each at its maximum-EDT voxel; a kind is absent when there is
    no such error (an empty dict when pred == label).

    pred: prediction (bool, 0/1 or probability; >= 0.5 is foreground); label: lesion mask.
    """
    return {kind: point for kind, (point, _) in _errors(pred, label).items()}


def next_error_click(pred, label) -> tuple[str, Point] | None:
    """(kind, (i,j,k)) for the single largest error component (missed lesion -> "tumor", false
    positive -> "background"; a tie goes to the missed lesion); None when pred == label."""
    errors = _errors(pred, label)
    if not errors:
        return None
    kind = max(errors, key=lambda k: (errors[k][1], k == "tumor"))
    return kind, errors[kind][0]
