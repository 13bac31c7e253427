"""MONAI transforms around the post-processing pipeline, for bundle inference configs.

`PostProcess` (array): probability or mask on the PET grid -> uint8 mask, given the PET (SUV,
same grid, MetaTensor or array + affine), the clicks (Clicks or {"tumor": (N, 3), "background": (M, 3)}
in the PET's voxel indices), the tracer and the config. `PostProcessd` reads those from a data
dictionary. Channel-first inputs (1, X, Y, Z) are accepted and the channel is kept.
"""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from petclick.io.clickfile import Clicks, clicks_from_points
from petclick.io.images import CaseVolumes, Volume
from petclick.postprocess.pipeline import make_config, postprocess


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _affine(x, affine) -> np.ndarray:
    if affine is not None:
        return np.asarray(_numpy(affine), float)
    meta_affine = getattr(x, "affine", None)
    if meta_affine is None:
        raise ValueError("PostProcess needs the PET affine: pass a MetaTensor or `affine`")
    return np.asarray(_numpy(meta_affine), float)


def _clicks(clicks) -> Clicks:
    if clicks is None:
        return Clicks()
    if isinstance(clicks, Clicks):
        return clicks
    return clicks_from_points(np.asarray(clicks.get("tumor", np.zeros((0, 3)))).reshape(-1, 3).round(),
                              np.asarray(clicks.get("background", np.zeros((0, 3)))).reshape(-1, 3).round())


class PostProcess(Transform):
    """Array version: `PostProcess(config)(prob, pet, clicks=None, tracer=None, affine=None)` -> mask."""

    def __init__(self, config: dict | str | None = None):
        self.config = make_config(config)

    def __call__(self, prob, pet, clicks=None, tracer: str | None = None, affine=None):
        p, s = _numpy(prob).astype(np.float32), _numpy(pet).astype(np.float32)
        channel = p.ndim == 4
        p, s = (p[0] if p.ndim == 4 else p), (s[0] if s.ndim == 4 else s)
        aff = _affine(pet, affine)
        case = CaseVolumes(Volume(np.zeros_like(s), aff), Volume(s, aff))
        mask = postprocess(p, case, _clicks(clicks), tracer, self.config).astype(np.uint8)
        mask = mask[None] if channel else mask
        if isinstance(prob, torch.Tensor):
            out = torch.as_tensor(mask, device=prob.device)
            if hasattr(prob, "copy_meta_from"):
                from monai.data import MetaTensor
                out = MetaTensor(out, meta=prob.meta)
            return out
        return mask


class PostProcessd(MapTransform):
    """Dictionary version: replaces `keys` (probabilities) by masks using `pet_key`, `clicks_key`, `tracer_key`."""

    def __init__(self, keys: KeysCollection, pet_key: str = "pet", clicks_key: str = "clicks",
                 tracer_key: str = "tracer", config: dict | str | None = None, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.pet_key, self.clicks_key, self.tracer_key = pet_key, clicks_key, tracer_key
        self.op = PostProcess(config)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        tracer = d.get(self.tracer_key)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key], d[self.pet_key], d.get(self.clicks_key), tracer if isinstance(tracer, str) else None)
        return d
