"""The deterministic preprocessing shared by training (before caching), validation and inference.

    NaN/infinite CT -> -1000 HU, PET -> 0 SUV (what petclick.io.images does when a command reads a
    case; training reads files through MONAI, so it is repeated here) -> [Spacingd when `spacing`
    is set] -> CT window [lo, hi] HU -> [0, 1] -> PET clip [0, c] SUV -> [0, 1] (`pet_scale` linear,
    or log: petclick.runtime.petscale) -> concatenate
    (CT, PET) into `image` -> crop to the body bounding box (CT above the window's lower bound; the
    whole image when no voxel is, e.g. an all-air CT)

A `preprocess` dict (stored in every checkpoint) describes it: {"spacing": None | [sx, sy, sz],
"ct_window": [lo, hi], "pet_clip": [0, c], "pet_scale": "linear" | "log", "crop_body": bool}; a
checkpoint written before `pet_scale` existed reads as linear. The image keeps a MetaTensor affine
through every step, which is how clicks (world coordinates) and predictions find their way back
to the PET grid.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    ConcatItemsd,
    CropForegroundd,
    DeleteItemsd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    ScaleIntensityRanged,
    Spacingd,
    Transform,
)
from monai.config import KeysCollection

from petclick.core.errors import InputError
from petclick.runtime.petscale import PET_SCALES, LogScaleIntensityd

DEFAULT_PREPROCESS: dict[str, Any] = {"spacing": None, "ct_window": [-250.0, 250.0], "pet_clip": [0.0, 10.0],
                                      "pet_scale": "linear", "crop_body": True}


def preprocess_config(pre: Mapping[str, Any] | None) -> dict[str, Any]:
    """`pre` completed with the defaults, values as plain lists/floats (what checkpoints store)."""
    out = dict(DEFAULT_PREPROCESS)
    out.update({k: v for k, v in (pre or {}).items() if k in DEFAULT_PREPROCESS})
    out["spacing"] = None if out["spacing"] in (None, "none") else [float(s) for s in out["spacing"]]
    out["ct_window"] = [float(v) for v in out["ct_window"]]
    out["pet_clip"] = [float(v) for v in out["pet_clip"]]
    out["crop_body"] = bool(out["crop_body"])
    out["pet_scale"] = str(out["pet_scale"]).strip().lower()
    if out["pet_scale"] not in PET_SCALES:
        raise InputError("data.pet_scale", f"unknown PET scaling {out['pet_scale']!r}; choose one of {', '.join(PET_SCALES)}")
    return out


CT_FILL_HU = -1000.0
PET_FILL_SUV = 0.0


class ReplaceNonFinite(Transform):
    """NaN and +-infinity in an array or tensor -> `value` (other values unchanged)."""

    def __init__(self, value: float) -> None:
        self.value = float(value)

    def __call__(self, img):
        if isinstance(img, torch.Tensor):
            finite = torch.isfinite(img)
            if bool(finite.all()):  # the usual case: no copy of a whole volume
                return img
            return torch.where(finite, img, torch.as_tensor(self.value, dtype=img.dtype))
        arr = np.asarray(img)
        finite = np.isfinite(arr)
        return arr if bool(finite.all()) else np.where(finite, arr, np.asarray(self.value, dtype=arr.dtype))


class ReplaceNonFinited(MapTransform):
    """Dictionary version of ReplaceNonFinite: one fill value for all `keys`."""

    def __init__(self, keys: KeysCollection, value: float, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.replace = ReplaceNonFinite(value)

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.replace(d[key])
        return d


#: One resampling at a time in a process (SerialSpacingd).
_RESAMPLE_LOCK = threading.Lock()


class SerialSpacingd(Spacingd):
    """MONAI's Spacingd, one call at a time per process. Resampling is each case's memory peak (its sampling
    grid holds 3 coordinates per output voxel beside the loaded volumes); the threads that fill a training
    cache preprocess whole cases in parallel, and this keeps their peaks from coinciding
    (petclick.training.plan.load_bytes). Results are Spacingd's."""

    def __call__(self, data, lazy: bool | None = None):
        with _RESAMPLE_LOCK:
            return super().__call__(data, lazy=lazy)


def body_or_everything(ct: torch.Tensor) -> torch.Tensor:
    """CropForeground's selection: the CT above the window's lower bound, else every voxel (so an
    all-air CT is not cropped to nothing)."""
    mask = ct > 0
    return mask if bool(mask.any()) else torch.ones_like(mask)


def load_transforms(keys: Sequence[str]) -> list:
    """Read NIfTI files into channel-first MetaTensors (array order and affine as nibabel gives them)."""
    return [LoadImaged(keys=list(keys), image_only=True, ensure_channel_first=False),
            EnsureChannelFirstd(keys=list(keys), channel_dim="no_channel")]


def preprocess_transforms(pre: Mapping[str, Any], label_key: str | Sequence[str] | None = None) -> list:
    """The transforms from loaded `image` (CT) and `pet` (and optional label maps: one key or several,
    e.g. the lesion label and the organ map, all resampled by nearest neighbour and cropped alike) to
    the network's 2-channel `image` in the network's space. Array transforms keep the MetaTensor affine."""
    pre = preprocess_config(pre)
    labels = [] if not label_key else [label_key] if isinstance(label_key, str) else list(label_key)
    spatial = ["image", "pet"] + labels
    out: list = [EnsureTyped(keys=spatial, dtype=torch.float32, track_meta=True),
                 ReplaceNonFinited(keys="image", value=CT_FILL_HU), ReplaceNonFinited(keys="pet", value=PET_FILL_SUV)]
    if pre["spacing"] is not None:
        modes = ["bilinear", "bilinear"] + ["nearest"] * len(labels)
        # float32 resampling: MONAI's default (float64) holds a float64 copy, a float64 sampling grid of 3
        # coordinates per output voxel and a float64 output: 2x the memory of a case being cached
        out.append(SerialSpacingd(keys=spatial, pixdim=pre["spacing"], mode=modes, dtype=torch.float32))
    lo, hi = pre["ct_window"]
    out.append(ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True))
    p0, p1 = pre["pet_clip"]
    if pre["pet_scale"] == "log":
        out.append(LogScaleIntensityd(keys="pet", lo=p0, hi=p1))
    else:
        out.append(ScaleIntensityRanged(keys="pet", a_min=p0, a_max=p1, b_min=0.0, b_max=1.0, clip=True))
    out += [ConcatItemsd(keys=["image", "pet"], name="image", dim=0), DeleteItemsd(keys="pet")]
    if pre["crop_body"]:
        crop_keys = ["image"] + labels
        out.append(CropForegroundd(keys=crop_keys, source_key="image", select_fn=body_or_everything,
                                   channel_indices=0, allow_smaller=True, margin=1, start_coord_key=None,
                                   end_coord_key=None))
    return out


@dataclass
class PreparedCase:
    """A case in the network's space: `image` (2, ...) MetaTensor (CT, PET scaled) with its affine,
    plus the PET grid (affine, shape) that predictions return to."""

    image: MetaTensor
    pet_affine: np.ndarray
    pet_shape: tuple[int, int, int]

    @property
    def affine(self) -> np.ndarray:
        return np.asarray(self.image.affine, dtype=np.float64)


def prepare_arrays(pre: Mapping[str, Any], ct: np.ndarray, pet: np.ndarray, affine: np.ndarray) -> PreparedCase:
    """Preprocess in-memory CT/PET arrays on the PET grid (`affine`) into the network's space."""
    affine_t = torch.as_tensor(np.asarray(affine, dtype=np.float64))
    data = {"image": MetaTensor(torch.as_tensor(np.asarray(ct, np.float32))[None], affine=affine_t.clone()),
            "pet": MetaTensor(torch.as_tensor(np.asarray(pet, np.float32))[None], affine=affine_t.clone())}
    out = Compose(preprocess_transforms(pre))(data)
    return PreparedCase(out["image"], np.asarray(affine, np.float64), tuple(int(s) for s in np.shape(pet)))

