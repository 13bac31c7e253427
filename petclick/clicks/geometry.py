"""Click geometry: carry clicks through spatial transforms as points, via the image's affine.

A click is a point, not a voxel of a sparse image that resampling could blur away or lose. Right
after loading, `ClicksToWorldd` maps the clicks from voxel indices of the reference image (usually
``image``) to world coordinates (mm) with its current affine and moves them to ``clicks_world``.
MONAI's spatial transforms (Orientation, Spacing, crops, pads, flips, rotations, zooms) then update
the reference MetaTensor's affine while leaving the world points alone; `ClicksToVoxeld`, after the
last spatial transform, maps them back to voxel coordinates of the transformed array with its current
affine and drops the points outside it ([-0.5, size - 0.5) on every axis: outside every voxel).

Why not MONAI's ApplyTransformToPointsd: it wants one (C, N, 3) point tensor per key, while
petclick carries two ragged lists per case ({"tumor": (N, 3), "background": (M, 3)}); the mapping
itself is one 4x4 matrix product, done here in float64 numpy.

Lazy resampling: the affine and shape are read with ``peek_pending_affine``/``peek_pending_shape``
so pending (not yet applied) lazy operations are accounted for.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform

KINDS = ("tumor", "background")
logger = logging.getLogger(__name__)


def _affine_np(affine: Any) -> np.ndarray:
    a = affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)
    a = a.astype(np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"click geometry needs a 4x4 affine, got shape {a.shape}")
    return a


def _points_np(points: Any) -> np.ndarray:
    p = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    p = p.astype(np.float64).reshape(-1, 3) if p.size else np.zeros((0, 3), np.float64)
    return p


def clicks_to_world(points: Any, affine: Any) -> np.ndarray:
    """Voxel coordinates (N, 3) -> world coordinates (N, 3) in mm: affine @ (i, j, k, 1)."""
    p, a = _points_np(points), _affine_np(affine)
    return p @ a[:3, :3].T + a[:3, 3]


def clicks_to_voxel(points: Any, affine: Any, shape: Sequence[int] | None = None,
                    return_mask: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """World coordinates (N, 3) -> voxel coordinates (float) of the grid with this affine.

    With ``shape``, points outside the array ([-0.5, size - 0.5) on each axis) are dropped; with
    ``return_mask`` the boolean mask of kept points (over the input rows) is returned as well.
    """
    p, a = _points_np(points), _affine_np(affine)
    vox = np.linalg.solve(a[:3, :3], (p - a[:3, 3]).T).T if len(p) else np.zeros((0, 3))
    keep = np.ones(len(vox), bool)
    if shape is not None:
        size = np.asarray(tuple(shape)[-3:], dtype=np.float64)
        keep = np.all((vox >= -0.5) & (vox < size - 0.5), axis=1)
        vox = vox[keep]
    return (vox, keep) if return_mask else vox


def reference_geometry(ref: Any, what: str = "reference image") -> tuple[np.ndarray, tuple[int, ...]]:
    """The current (pending-aware) affine and spatial shape of a channel-first MetaTensor."""
    if not hasattr(ref, "affine"):
        raise ValueError(f"{what} carries no affine (a MetaTensor is needed: keep track_meta on, "
                         "load with LoadImaged/EnsureChannelFirstd)")
    affine = ref.peek_pending_affine() if hasattr(ref, "peek_pending_affine") else ref.affine
    if hasattr(ref, "peek_pending_shape"):
        shape = tuple(int(s) for s in ref.peek_pending_shape())
    else:
        shape = tuple(int(s) for s in ref.shape[1:])
    return _affine_np(affine), shape[-3:]


def _as_click_dict(clicks: Any) -> dict[str, np.ndarray]:
    if clicks is None:
        return {k: np.zeros((0, 3), np.float64) for k in KINDS}
    if hasattr(clicks, "tumor") and hasattr(clicks, "background"):  # petclick.io.clickfile.Clicks
        clicks = {"tumor": clicks.tumor, "background": clicks.background}
    if not isinstance(clicks, Mapping):
        raise ValueError(f"clicks must be a mapping {{'tumor': (N, 3), 'background': (M, 3)}}, got {type(clicks)}")
    unknown = set(clicks) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown click kinds {sorted(unknown)}; expected {list(KINDS)}")
    return {k: _points_np(clicks.get(k, np.zeros((0, 3)))) for k in KINDS}


class ClicksToWorldd(MapTransform):
    """Voxel clicks of ``ref_key`` -> world clicks: data[clicks_key] moves to data[world_key] (mm).

    Place right after loading (and LoadClicksd), before any spatial transform. The voxel entry is
    removed, so nothing can read stale voxel coordinates while the image is being transformed.
    """

    def __init__(self, clicks_key: str = "clicks", ref_key: str = "image", world_key: str | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__([clicks_key], allow_missing_keys)
        self.clicks_key, self.ref_key = clicks_key, ref_key
        self.world_key = world_key or f"{clicks_key}_world"

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.clicks_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"ClicksToWorldd: no {self.clicks_key!r} in the data (add LoadClicksd first)")
        affine, _ = reference_geometry(d[self.ref_key], f"data[{self.ref_key!r}]")
        clicks = _as_click_dict(d.pop(self.clicks_key))
        d[self.world_key] = {k: clicks_to_world(v, affine) for k, v in clicks.items()}
        return d


class ClicksToVoxeld(MapTransform):
    """World clicks -> voxel coordinates of the CURRENT ``ref_key`` array: data[world_key] -> data[clicks_key].

    Place after the last spatial transform. Points outside the array are dropped (never clamped);
    the number dropped is logged at debug level and, with ``dropped_key``, stored in the data.
    """

    def __init__(self, clicks_key: str = "clicks", ref_key: str = "image", world_key: str | None = None,
                 dropped_key: str | None = None, allow_missing_keys: bool = False) -> None:
        self.world_key = world_key or f"{clicks_key}_world"
        super().__init__([self.world_key], allow_missing_keys)
        self.clicks_key, self.ref_key, self.dropped_key = clicks_key, ref_key, dropped_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.world_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"ClicksToVoxeld: no {self.world_key!r} in the data (add ClicksToWorldd first)")
        affine, shape = reference_geometry(d[self.ref_key], f"data[{self.ref_key!r}]")
        world = _as_click_dict(d.pop(self.world_key))
        out, dropped = {}, 0
        for kind, pts in world.items():
            vox, keep = clicks_to_voxel(pts, affine, shape, return_mask=True)
            out[kind] = vox
            dropped += int((~keep).sum())
        if dropped:
            logger.debug("ClicksToVoxeld: dropped %d click(s) outside the %s array", dropped, shape)
        if self.dropped_key:
            d[self.dropped_key] = dropped
        d[self.clicks_key] = out
        return d
