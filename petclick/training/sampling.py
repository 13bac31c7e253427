"""Where training patches are cropped: YAML `data.sampler`, one registry entry per sampler.

- `posneg` (MONAI's RandCropByPosNegLabeld): patch centres on lesion voxels with weight `data.pos`
  and on other body voxels with weight `data.neg`. Its cached indices are compact (PosNegIndicesd):
  every lesion voxel and a fixed draw of `BODY_SAMPLES` non-lesion body voxels, int32 (MONAI's
  FgBgToIndicesd would keep an int64 index of every body voxel: about 0.5 GB at 400x400x326).
- `uptake`: three classes of centre, weighted by `data.sampler_ratios` [lesion, hot, body]:
  lesion voxels; hot non-lesion voxels (PET above the case's official background threshold, the
  99.75th percentile of non-lesion PET: brain, bladder, kidneys, heart, glands, where a detector
  must learn to say no); and any body voxel. A detector trained on posneg patches rarely sees the
  organs that look like lesions; `uptake` shows them as often as the lesions. The crop itself is
  MONAI's RandCropByLabelClassesd over indices built here, which stay small: the lesion and hot
  voxels (about 0.25% of a case each at most) and a fixed random draw of `BODY_SAMPLES` body voxels,
  int32 (a 400x400x963 case: about 0.7 MB instead of about 0.5 GB of int64 indices).

A sampler is `(deterministic transforms, the random crop)` for the training chain
(petclick.training.data); a new one is one `SAMPLERS.register` entry and its YAML name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, RandCropByLabelClassesd, RandCropByPosNegLabeld, Transform

from petclick.clicks.click_curriculum import high_uptake_mask
from petclick.core.errors import InputError
from petclick.core.registry import Registry

INDICES_KEY = "sampler_indices"
BODY_SAMPLES = 20000
CLASSES = ("lesion", "hot", "body")


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


class UptakeClassIndices(Transform):
    """Flat int32 indices of the three centre classes of one case: lesion voxels, hot non-lesion voxels
    (PET above `threshold`, the official background rule) and a seeded draw of `body_samples` body voxels
    (image above `body_threshold` in any channel: the preprocessed CT window starts at 0 in air)."""

    def __init__(self, body_samples: int = BODY_SAMPLES, body_threshold: float = 0.0, seed: int = 0):
        self.body_samples, self.body_threshold, self.seed = int(body_samples), float(body_threshold), int(seed)

    def __call__(self, image: Any, label: Any, pet_channel: int = 1, threshold: float | None = None) -> list[np.ndarray]:
        img = _numpy(image)
        lesion = _numpy(label)
        lesion = (lesion[0] if lesion.ndim == img.ndim else lesion) > 0.5
        pet = img[pet_channel].astype(np.float32)
        hot = high_uptake_mask(pet, lesion, threshold)
        body = _body_draw(np.flatnonzero((img > self.body_threshold).any(axis=0).ravel()), self.body_samples, self.seed)
        return [np.flatnonzero(lesion.ravel()).astype(np.int32), np.flatnonzero(hot.ravel()).astype(np.int32),
                body.astype(np.int32)]


class UptakeClassIndicesd(MapTransform):
    """data[indices_key] = UptakeClassIndices of data[image_key], data[label_key] and the case's
    background threshold data[threshold_key] (BackgroundThresholdd, before it)."""

    def __init__(self, image_key: str = "image", label_key: str = "label", pet_channel: int = 1,
                 threshold_key: str = "pet_threshold", indices_key: str = INDICES_KEY, **kwargs: Any):
        super().__init__([image_key, label_key])
        self.image_key, self.label_key, self.pet_channel = image_key, label_key, int(pet_channel)
        self.threshold_key, self.indices_key = threshold_key, indices_key
        self.indices = UptakeClassIndices(**kwargs)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        d[self.indices_key] = self.indices(d[self.image_key], d[self.label_key], self.pet_channel,
                                           d.get(self.threshold_key))
        return d


def _body_draw(body: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """A seeded, sorted draw of `samples` of the flat indices `body` (all of them when fewer)."""
    if body.size > samples:  # the same draw for the same case: the cache stays deterministic
        rng = np.random.default_rng([seed, int(body.size)])
        body = np.sort(rng.choice(body, samples, replace=False))
    return body


class PosNegIndicesd(MapTransform):
    """`label_fg_indices` (every lesion voxel) and `label_bg_indices` (a seeded draw of `body_samples`
    non-lesion voxels with image above `image_threshold` in any channel), flat int32: what
    RandCropByPosNegLabeld reads, without FgBgToIndicesd's int64 index of every body voxel."""

    def __init__(self, label_key: str = "label", image_key: str = "image", image_threshold: float = 0.0,
                 body_samples: int = BODY_SAMPLES, seed: int = 0):
        super().__init__([label_key, image_key])
        self.label_key, self.image_key = label_key, image_key
        self.image_threshold, self.body_samples, self.seed = float(image_threshold), int(body_samples), int(seed)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        img = _numpy(d[self.image_key])
        lesion = _numpy(d[self.label_key])
        lesion = (lesion[0] if lesion.ndim == img.ndim else lesion) > 0.5
        body = ((img > self.image_threshold).any(axis=0) & ~lesion).ravel()
        d[f"{self.label_key}_fg_indices"] = np.flatnonzero(lesion.ravel()).astype(np.int32)
        d[f"{self.label_key}_bg_indices"] = _body_draw(np.flatnonzero(body), self.body_samples, self.seed).astype(np.int32)
        return d


@dataclass(frozen=True)
class Sampler:
    """The index transforms (cached, after padding) and the random crop of a training chain."""

    indices: Callable[[Mapping[str, Any]], list]
    crop: Callable[[Mapping[str, Any], Sequence[str], Sequence[int]], Any]
    keys: tuple[str, ...]   # the index keys the crop consumes (deleted after it)


def _ratios(data: Mapping[str, Any]) -> list[float]:
    ratios = data.get("sampler_ratios", [1.0, 1.0, 1.0])
    try:
        values = [float(r) for r in ratios]
    except (TypeError, ValueError):
        values = []
    if len(values) != len(CLASSES) or any(not np.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise InputError("data.sampler_ratios", f"must be {len(CLASSES)} non-negative weights {list(CLASSES)} with a "
                                                f"positive sum, got {ratios!r}")
    return values


SAMPLERS: Registry[Sampler] = Registry("training sampler")
SAMPLERS.register("posneg", Sampler(
    lambda data: [PosNegIndicesd("label", "image", image_threshold=0.0)],
    lambda data, keys, roi: RandCropByPosNegLabeld(
        keys=list(keys), label_key="label", spatial_size=list(roi), pos=float(data["pos"]), neg=float(data["neg"]),
        num_samples=int(data["num_crops"]), fg_indices_key="label_fg_indices", bg_indices_key="label_bg_indices"),
    ("label_fg_indices", "label_bg_indices")))
SAMPLERS.register("uptake", Sampler(
    lambda data: [UptakeClassIndicesd("image", "label", pet_channel=1)],
    lambda data, keys, roi: RandCropByLabelClassesd(
        keys=list(keys), label_key="label", spatial_size=list(roi), ratios=_ratios(data), num_classes=len(CLASSES),
        num_samples=int(data["num_crops"]), indices_key=INDICES_KEY, warn=False),
    (INDICES_KEY,)))


def sampler(data: Mapping[str, Any]) -> Sampler:
    """The sampler named by `data.sampler` (default posneg); an unknown name is an InputError listing the known."""
    return SAMPLERS.get(data.get("sampler") or "posneg", "data.sampler")
