"""Training and validation data of one fold: the MONAI transform chains and cached datasets.

Training, per case (cached after the deterministic part):
    LoadImaged(CT image, pet, label) -> EnsureChannelFirstd -> petclick.runtime.preprocess
    (optional Spacingd, CT window, PET clip, concatenate, body crop) -> SpatialPadd(ROI) ->
    FgBgToIndicesd -> [cache] -> RandCropByPosNegLabeld (foreground oversampling) -> rotation and
    scaling (RandAffined), flips on all axes, smoothing, noise, intensity shift and scale ->
    SimulateTrainingClicksd (online click curriculum on the patch label and PET channel) ->
    EncodeClicksd (channels CT, PET, fg, bg).
Validation: the same deterministic part without the label; each case's JSON clicks are mapped
through the case's geometry at validation time (petclick.runtime.clickinput).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, partition_dataset
from monai.transforms import (
    Compose,
    DeleteItemsd,
    EnsureTyped,
    FgBgToIndicesd,
    MapTransform,
    RandAffined,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    SpatialPadd,
)

from petclick.core.errors import InputError
from petclick.runtime.preprocess import load_transforms, preprocess_transforms
from petclick.io.datalist import entry_case_id, load_datalist, resolve_entry, split_fold

PET_CHANNEL = 1


class RecordPetGridd(MapTransform):
    """Keep the loaded PET grid (affine, shape) under `pet_affine` / `pet_shape`: where
    predictions go back to for the official metrics."""

    def __init__(self, pet_key: str = "pet"):
        super().__init__(keys=[pet_key])
        self.pet_key = pet_key

    def __call__(self, data):
        d = dict(data)
        d["pet_affine"] = np.asarray(d[self.pet_key].affine, np.float64)
        d["pet_shape"] = np.asarray(d[self.pet_key].shape[1:], np.int64)
        return d


class CastImaged(MapTransform):
    """Cast `image` to a dtype (float16 halves the cache; values are in [0, 1])."""

    def __init__(self, keys, dtype: str):
        super().__init__(keys)
        self.dtype = getattr(torch, dtype)

    def __call__(self, data):
        d = dict(data)
        for k in self.key_iterator(d):
            d[k] = d[k].to(self.dtype)
        return d


@dataclass
class FoldFiles:
    """Resolved datalist entries of one fold."""

    train: list[dict]
    val: list[dict]


def fold_files(datalist: str | Path, dataroot: str | Path, fold: int) -> FoldFiles:
    """Training entries of every other fold and validation entries of `fold` (paths resolved);
    a fold without cases raises InputError."""
    data = load_datalist(datalist)
    entries = data.get("training", [])
    for n, e in enumerate(entries):
        if "label" not in e:
            raise InputError(datalist, f"training[{n}] ({entry_case_id(e)}) lacks a 'label'")
    resolved = [dict(resolve_entry(e, dataroot), case=entry_case_id(e)) for e in entries]
    train, val = split_fold(resolved, fold, datalist)
    if not train:
        raise InputError(datalist, f"no training cases outside fold {fold}")
    if not val:
        raise InputError(datalist, f"fold {fold} has no validation cases")
    return FoldFiles(train, val)


def _radians(deg: float) -> float:
    return float(deg) * math.pi / 180.0


def train_transforms(cfg: Mapping[str, Any], roi: Sequence[int]) -> tuple[list, list]:
    """(deterministic, random) transform lists of the training chain for config sections
    data/augment/clicks and the training patch size `roi`."""
    from petclick.clicks.curriculum import SimulateTrainingClicksd
    from petclick.clicks.encoding import EncodeClicksd

    data, aug, clicks = cfg["data"], cfg.get("augment", {}), cfg["clicks"]
    keys = ["image", "label"]
    det = load_transforms(["image", "pet", "label"]) + preprocess_transforms(data, label_key="label") + [
        EnsureTyped(keys="label", dtype=torch.uint8, track_meta=True),
        SpatialPadd(keys=keys, spatial_size=list(roi)),
        FgBgToIndicesd(keys="label", image_key="image", image_threshold=0.0),
    ]
    if data.get("cache_dtype"):
        det.append(CastImaged("image", data["cache_dtype"]))
    p = float(aug.get("prob", 0.2))
    rand = [
        RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=list(roi), pos=float(data.get("pos", 1.0)),
                               neg=float(data.get("neg", 1.0)), num_samples=int(data.get("num_crops", 1)),
                               fg_indices_key="label_fg_indices", bg_indices_key="label_bg_indices"),
        DeleteItemsd(keys=["label_fg_indices", "label_bg_indices"]),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=True),
        EnsureTyped(keys="label", dtype=torch.float32, track_meta=True),
        RandAffined(keys=keys, prob=p, rotate_range=[_radians(aug.get("rotate_deg", 15.0))] * 3,
                    scale_range=[float(aug.get("scale", 0.15))] * 3, mode=["bilinear", "nearest"],
                    padding_mode="zeros", spatial_size=list(roi)),
        *[RandFlipd(keys=keys, prob=float(aug.get("flip_prob", 0.5)), spatial_axis=a) for a in range(3)],
        RandGaussianSmoothd(keys="image", prob=p, sigma_x=list(aug.get("smooth_sigma", [0.5, 1.0])),
                            sigma_y=list(aug.get("smooth_sigma", [0.5, 1.0])),
                            sigma_z=list(aug.get("smooth_sigma", [0.5, 1.0]))),
        RandGaussianNoised(keys="image", prob=p, std=float(aug.get("noise_std", 0.05))),
        RandShiftIntensityd(keys="image", prob=p, offsets=float(aug.get("shift", 0.1))),
        RandScaleIntensityd(keys="image", prob=p, factors=float(aug.get("scale_intensity", 0.1))),
        SimulateTrainingClicksd(label_key="label", pet_key=PET_CHANNEL, clicks_key="clicks",
                                curriculum=dict(clicks.get("curriculum") or {}),
                                max_clicks=int(clicks["max_clicks"])),
        EncodeClicksd(image_key="image", clicks_key="clicks", **dict(clicks.get("encoding") or {})),
        DeleteItemsd(keys=["clicks"]),
        EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False),
    ]
    return det, rand


def val_transforms(cfg: Mapping[str, Any]) -> list:
    """Deterministic chain of a validation case: loaded CT/PET -> network space, PET grid recorded."""
    return load_transforms(["image", "pet"]) + [RecordPetGridd("pet")] + preprocess_transforms(cfg["data"])


def _cache_workers(cfg: Mapping[str, Any]) -> int:
    return max(1, int(cfg["data"].get("num_workers", 0)))


def train_dataset(cfg: Mapping[str, Any], files: list[dict], roi: Sequence[int], rank: int = 0,
                  world_size: int = 1) -> CacheDataset:
    """Cached training dataset; in DDP each rank caches and trains on its own shard of the files."""
    det, rand = train_transforms(cfg, roi)
    if world_size > 1:
        files = partition_dataset(files, num_partitions=world_size, shuffle=True, seed=0, even_divisible=True)[rank]
    items = [{"image": f["image"], "pet": f["pet"], "label": f["label"]} for f in files]
    return CacheDataset(items, transform=Compose(det + rand), cache_rate=float(cfg["data"].get("cache_rate", 1.0)),
                        num_workers=_cache_workers(cfg), progress=False)


def val_dataset(cfg: Mapping[str, Any], files: list[dict]) -> CacheDataset:
    """Cached validation dataset (image in network space, pet grid, plus label/clicks file paths)."""
    items = [{"image": f["image"], "pet": f["pet"], "label_file": f["label"], "clicks_file": f.get("clicks"),
              "case": f["case"]} for f in files]
    return CacheDataset(items, transform=Compose(val_transforms(cfg)), cache_rate=1.0,
                        num_workers=_cache_workers(cfg), progress=False)


def train_loader(cfg: Mapping[str, Any], dataset: CacheDataset, seed: int) -> DataLoader:
    """Shuffled loader; each item yields `num_crops` patches, so a batch holds batch_size * num_crops."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=int(cfg["data"].get("batch_size", 1)), shuffle=True,
                      num_workers=int(cfg["data"].get("num_workers", 0)), generator=gen, drop_last=False,
                      persistent_workers=False)
