"""Clicks as one fixed-size array, so that they collate into a batch: (2, max_clicks, 3), row 0
tumour and row 1 background clicks in order, NaN where a kind has fewer clicks.

Training simulates clicks per patch in the loader workers and encodes them later on the batch, on
the training device (petclick.training.batch); the ragged {"tumor": (N, 3), "background": (M, 3)}
dict cannot cross the collate step, this array can.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from monai.transforms import MapTransform

KINDS = ("tumor", "background")


def pack_clicks(clicks: Mapping[str, Any] | None, max_clicks: int) -> np.ndarray:
    """(2, max_clicks, 3) float32 with the clicks of each kind first and NaN after; more than
    `max_clicks` of a kind raises ValueError (clicks are never dropped silently)."""
    out = np.full((len(KINDS), int(max_clicks), 3), np.nan, dtype=np.float32)
    for row, kind in enumerate(KINDS):
        pts = np.asarray((clicks or {}).get(kind, np.zeros((0, 3))), dtype=np.float32).reshape(-1, 3)
        if len(pts) > max_clicks:
            raise ValueError(f"{len(pts)} {kind} clicks do not fit the {max_clicks} slots of a packed click array")
        out[row, : len(pts)] = pts
    return out


def unpack_clicks(packed: Any) -> dict[str, Any]:
    """The {"tumor": (N, 3), "background": (M, 3)} dict of one packed (2, K, 3) array (numpy or torch,
    any device); rows holding NaN are the empty slots."""
    out = {}
    for row, kind in enumerate(KINDS):
        pts = packed[row]
        keep = ~(torch.isnan(pts).any(-1) if isinstance(pts, torch.Tensor) else np.isnan(pts).any(-1))
        out[kind] = pts[keep]
    return out


class PackClicksd(MapTransform):
    """data[clicks_key] (the dict SimulateTrainingClicksd writes) -> its packed (2, max_clicks, 3) array."""

    def __init__(self, clicks_key: str = "clicks", max_clicks: int = 10, allow_missing_keys: bool = False):
        super().__init__([clicks_key], allow_missing_keys)
        self.clicks_key, self.max_clicks = clicks_key, int(max_clicks)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if self.clicks_key in d or not self.allow_missing_keys:
            d[self.clicks_key] = torch.as_tensor(pack_clicks(d.get(self.clicks_key), self.max_clicks))
        return d
