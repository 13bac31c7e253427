"""Clicks of a case (PET voxel indices) into the network's input: through the PET affine and the
preprocessed image's affine to voxel coordinates of the network's space (clicks outside it are
dropped), then petclick.clicks' encoding appends the click channel(s)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

import numpy as np
import torch

from petclick.runtime.preprocess import PreparedCase
from petclick.io.clickfile import Clicks


def click_channels(encoding: Mapping[str, Any] | None) -> int:
    """Number of click channels an encoding config appends: 1 for `signed`, else 2 (fg, bg);
    None: the default encoding (petclick.config.presets.DEFAULT_ENCODING)."""
    from petclick.clicks.encoding import num_click_channels

    return num_click_channels(None if encoding is None else dict(encoding))


def clicks_in_network_space(prepared: PreparedCase, clicks: Clicks) -> dict[str, np.ndarray]:
    """`{"tumor": (N, 3), "background": (M, 3)}` float voxel coordinates in `prepared.image`; clicks
    outside it ([-0.5, size - 0.5) on an axis) dropped, as petclick.clicks.geometry drops them.

    One matrix (PET index -> network voxel) applied row by row with elementwise products, so a
    click maps to the same floats whichever other clicks come with it: an incremental update can
    then compare click lists exactly."""
    shape = np.asarray(tuple(int(s) for s in prepared.image.shape[1:]), dtype=np.float64)
    m = np.linalg.inv(prepared.affine) @ np.asarray(prepared.pet_affine, np.float64)
    out = {}
    for kind in ("tumor", "background"):
        pts = np.asarray(getattr(clicks, kind), dtype=np.float64).reshape(-1, 3)
        vox = (pts[:, None, :] * m[None, :3, :3]).sum(-1) + m[:3, 3]
        keep = np.all((vox >= -0.5) & (vox < shape - 0.5), axis=1)
        out[kind] = vox[keep]
    return out


class ClickEncoder:
    """Builds the network input (C + click channels, ...) of a prepared case for given clicks."""

    def __init__(self, encoding: Mapping[str, Any] | None = None):
        from petclick.clicks.encoding import encoderd_from_config

        self.encoding = dict(encoding or {})  # empty: the default encoding (petclick.config.presets)
        self.transform = encoderd_from_config(self.encoding, image_key="image", clicks_key="clicks")

    def changed_boxes(self, prepared: PreparedCase, before: Clicks, after: Clicks) -> list:
        """Voxel boxes (lo, hi) of the network input outside which the input for `after` equals the
        input for `before`: the encoding supports of the clicks added or removed (as a multiset:
        a repeated click changes nothing until its last copy goes)."""
        old, new = clicks_in_network_space(prepared, before), clicks_in_network_space(prepared, after)
        shape = tuple(int(s) for s in prepared.image.shape[1:])
        boxes = []
        for kind in ("tumor", "background"):
            a = Counter(map(tuple, old[kind].tolist()))
            b = Counter(map(tuple, new[kind].tolist()))
            changed = list(((a - b) + (b - a)).keys())
            boxes += self.transform.encoder.support_boxes(changed, shape, prepared.image)
        return boxes

    def __call__(self, prepared: PreparedCase, clicks: Clicks, device: str | torch.device = "cpu") -> torch.Tensor:
        image = prepared.image.to(device)
        data = {"image": image, "clicks": clicks_in_network_space(prepared, clicks)}
        return self.transform(data)["image"]
