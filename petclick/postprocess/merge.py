"""Rule: merge components closer than d mm into one lesion by filling the gap between them.

Definition: two components are "closer than d mm" when their dilations by a ball of radius d/2
(in mm, header spacing) touch. Each group of such components is merged by adding the voxels of
the group's convex hull that lie within d/2 mm of the mask (the convex bridge, limited to the
dilation so a bridge is at most d wide and never swallows far-away tissue). The result is one
18-connected component, so the metrics count it as one lesion: a lesion the model predicted in
fragments, one of which touches the ground truth, no longer counts the others as false positives,
and the gap voxels (true lesion voxels in a fragmented prediction) count for Dice.

Vectorised: one Euclidean distance transform of the mask's bounding box for the dilation, one
cc3d labelling of it for the groups; the hull test runs only inside each multi-component group's
own bounding box.
"""

from __future__ import annotations

from typing import Sequence

import cc3d
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

from petclick.postprocess.components import CONNECTIVITY, bbox, components


_CORNERS = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])


def _hull_fill(voxels: np.ndarray, candidates: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Which candidate voxel centres (N, 3) lie inside the convex hull of the voxel cubes (M, 3).

    Using the cubes' corners (not the centres) keeps the hull full-dimensional even for two
    single voxels or a flat lesion, so the bridge between any two components is well defined.
    """
    corners = ((voxels[:, None, :] + _CORNERS[None]) * spacing).reshape(-1, 3)
    try:
        hull = ConvexHull(corners)
        tri = Delaunay(corners[hull.vertices])
    except (QhullError, ValueError):
        return np.zeros(len(candidates), bool)
    return tri.find_simplex(candidates * spacing, tol=1e-9) >= 0


def merge_close_components(mask: np.ndarray, spacing: Sequence[float], distance_mm: float) -> np.ndarray:
    """Join components whose gap is under `distance_mm` with their convex bridge (see the module docstring)."""
    mask = np.asarray(mask, bool)
    if distance_mm <= 0:
        return mask
    spacing = np.asarray(spacing, float)
    r = distance_mm / 2.0
    margin = np.ceil(r / spacing).astype(int) + 1
    box = bbox(mask, margin)
    if box is None:
        return mask
    m = mask[box]
    comp = components(m)
    if comp.n < 2:
        return mask
    dilated = ndimage.distance_transform_edt(~m, sampling=spacing) <= r
    groups, n_groups = cc3d.connected_components(dilated.view(np.uint8), connectivity=CONNECTIVITY, return_N=True)
    group_of = np.zeros(comp.n + 1, np.int64)
    group_of[comp.labels[m]] = groups[m]
    members = np.bincount(group_of[1:], minlength=n_groups + 1)
    multi = np.flatnonzero(members[1:] >= 2) + 1
    if multi.size == 0:
        return mask
    out = mask.copy()
    view = out[box]
    group_boxes = cc3d.statistics(groups)["bounding_boxes"]
    for g in multi:
        gb = group_boxes[g]
        in_group = groups[gb] == g
        own = m[gb] & in_group
        cand = dilated[gb] & in_group & ~m[gb]
        surface = own & ~ndimage.binary_erosion(own)  # the hull of the surface voxels is the hull of all
        pts, cpts = np.argwhere(surface), np.argwhere(cand)
        if cpts.size == 0:
            continue
        inside = _hull_fill(pts, cpts, spacing)
        sel = cpts[inside]
        origin = np.array([s.start for s in gb])
        sel = sel + origin
        view[sel[:, 0], sel[:, 1], sel[:, 2]] = True
    return out
