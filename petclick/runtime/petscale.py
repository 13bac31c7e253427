"""Logarithmic SUV scaling for the network input (`data.pet_scale: log`).

Lesion SUVs span 2.5 to 50 and more (PSMA), so a linear window either saturates the hot lesions
(everything above the clip is 1, and the edge of a lesion whose peak is 40 SUV, at about half its
peak, disappears) or flattens the faint ones. In log space a fraction of the local peak, which is
where a blurred lesion's edge lies, is a fixed offset whatever the peak: the same convolution
filter finds the edge of a 4-SUV and of a 40-SUV lesion.

    y = log(1 + clip(x, lo, hi) - lo) / log(1 + hi - lo)    in [0, 1]
"""

from __future__ import annotations

import math
from typing import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

#: How the PET channel is mapped to [0, 1]: `linear` (MONAI's ScaleIntensityRange with clip) or `log`.
PET_SCALES = ("linear", "log")


class LogScaleIntensity(Transform):
    """log(1 + clip(x, lo, hi) - lo) / log(1 + hi - lo): values in [lo, hi] -> [0, 1], monotonic."""

    def __init__(self, lo: float, hi: float) -> None:
        if not hi > lo:
            raise ValueError(f"LogScaleIntensity needs hi > lo, got [{lo}, {hi}]")
        self.lo, self.hi = float(lo), float(hi)
        self.norm = math.log1p(self.hi - self.lo)

    def __call__(self, img):
        x = torch.as_tensor(img) if not isinstance(img, torch.Tensor) else img
        return torch.log1p(torch.clamp(x, self.lo, self.hi) - self.lo) / self.norm


class LogScaleIntensityd(MapTransform):
    """Dictionary version of LogScaleIntensity (keeps MetaTensor metadata)."""

    def __init__(self, keys: KeysCollection, lo: float, hi: float, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = LogScaleIntensity(lo, hi)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d
