"""LoadClicksd: click files (or already-parsed clicks) -> the in-pipeline representation.

data["clicks"] becomes {"tumor": (N, 3) float64, "background": (M, 3) float64} in voxel indices of
the image as loaded (nibabel/ITK index order, = DESIGN "Click coordinates"), keeping the first k
of each list (protocol step k). Follow it with ClicksToWorldd before any spatial transform.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform

from petclick.core.errors import InputError
from petclick.io.clickfile import KINDS, Clicks, clicks_from_json, read_clicks, validate_clicks


def empty_clicks() -> dict[str, np.ndarray]:
    """The click representation of protocol step 0 (no clicks)."""
    return {k: np.zeros((0, 3), np.float64) for k in KINDS}


def clicks_to_arrays(clicks: Clicks, k: int | None = None) -> dict[str, np.ndarray]:
    """Clicks -> {"tumor": (N, 3), "background": (M, 3)} float64, first k of each list (None: all)."""
    if k is not None:
        clicks = clicks.first(int(k))
    return {kind: np.asarray(getattr(clicks, kind), np.float64).reshape(-1, 3) for kind in KINDS}


def _spatial_shape(ref: Any) -> tuple[int, ...] | None:
    shape = getattr(ref, "shape", None)
    if shape is None:
        return None
    shape = tuple(int(s) for s in shape)
    return shape[-3:] if len(shape) >= 3 else None


class LoadClicksd(MapTransform):
    """Read clicks for each key: a JSON path (plain or grand-challenge), a Clicks, or a dict.

    Args:
        keys: the click entries (default "clicks").
        k: keep the first k clicks of each list (None: all).
        ref_key: when given, clicks are validated against data[ref_key]'s spatial shape (last 3 dims),
            so a click outside the image raises InputError naming the file and the click.
        budget: optional maximum number of clicks per list (InputError when exceeded).
        missing: what a missing/None entry means: "empty" (step 0, no clicks; default) or "error".
    """

    def __init__(self, keys: KeysCollection = "clicks", k: int | None = None, ref_key: str | None = None,
                 budget: int | None = None, missing: str = "empty") -> None:
        if missing not in ("empty", "error"):
            raise ValueError(f"LoadClicksd: missing must be 'empty' or 'error', got {missing!r}")
        if k is not None and int(k) < 0:
            raise ValueError(f"LoadClicksd: k must be >= 0, got {k!r}")
        super().__init__(keys, allow_missing_keys=missing == "empty")
        self.k, self.ref_key, self.budget, self.missing = k, ref_key, budget, missing

    def _read(self, value: Any, shape: tuple[int, ...] | None) -> Clicks:
        if isinstance(value, (str, Path)):
            return read_clicks(value, shape=shape, budget=self.budget)
        if isinstance(value, Clicks):
            return validate_clicks(value, shape, self.budget, "clicks")
        if isinstance(value, Mapping):
            if all(isinstance(v, np.ndarray) for v in value.values()) and set(value) <= set(KINDS):
                value = {kk: np.asarray(v).reshape(-1, 3).tolist() for kk, v in value.items()}
            return validate_clicks(clicks_from_json(dict(value), "clicks"), shape, self.budget, "clicks")
        raise InputError("clicks", f"expected a click-file path, Clicks or dict, got {type(value).__name__}")

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        shape = _spatial_shape(d.get(self.ref_key)) if self.ref_key else None
        for key in self.keys:
            value = d.get(key)
            if value is None:
                if self.missing == "error":
                    raise InputError(key, "no clicks given for this case")
                d[key] = empty_clicks()
                continue
            d[key] = clicks_to_arrays(self._read(value, shape), self.k)
        return d
