"""Training and validation data of one fold: the MONAI transform chains and cached datasets.

Training, per case (cached after the deterministic part):
    LoadImaged(CT image, pet, label) -> EnsureChannelFirstd -> petclick.runtime.preprocess
    (optional Spacingd, CT window, PET clip, concatenate, body crop) -> SpatialPadd(ROI) ->
    the sampler's index transform -> [cache] -> its random crop (`data.sampler`, petclick.training.sampling:
    posneg = RandCropByPosNegLabeld, uptake = lesion / hot organ / body centres) -> rotation and
    scaling (RandAffined), flips on all axes -> SimulateTrainingClicksd (online click curriculum, or
    autoPET V scribbles with `clicks.curriculum.kind: scribbles`, on the patch label and PET channel, before any intensity change: the official simulator sees the
    clean PET) -> smoothing, noise, intensity shift and scale -> EncodeClicksd (CT, PET, fg, bg).
    With `data.batch_transforms: true` the chain stops after the clicks (packed, PackClicksd), and
    the intensity augmentation and the encoding run on the collated batch on the training device
    (`batch_stage`, petclick.training.batch); the clicks are the same for the same seed.
    With an organ head (`network.organ_head`, petclick.training.organs) each case's organ map
    (datalist key `organs`) is loaded and mapped to organ classes right after the label and takes
    every spatial step the label takes (nearest neighbour); a case without one gets `organs_valid` 0.
Validation: the same deterministic part without the label; each case's JSON clicks are mapped
through the case's geometry at validation time (petclick.runtime.clickinput).
"""

from __future__ import annotations

import logging
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
    MapTransform,
    RandAffined,
    RandFlipd,
    RandGaussianNoise,
    RandGaussianNoised,
    RandGaussianSmooth,
    RandGaussianSmoothd,
    RandScaleIntensity,
    RandScaleIntensityd,
    RandShiftIntensity,
    RandShiftIntensityd,
    SpatialPadd,
)

from petclick.core.errors import InputError
from petclick.runtime.preprocess import load_transforms, preprocess_transforms
from petclick.io.datalist import entry_case_id, load_datalist, resolve_entry, split_fold

PET_CHANNEL = 1
log = logging.getLogger("petclick.training")


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

    data, aug, clicks = cfg["data"], cfg["augment"], cfg["clicks"]
    from petclick.clicks.curriculum import BackgroundThresholdd
    from petclick.training.organs import ORGAN_KEY, OrganTargetd, organ_head
    from petclick.training.sampling import sampler

    crops = sampler(data)
    head = organ_head(cfg["network"])
    labels = ["label"] + ([ORGAN_KEY] if head else [])  # the organ map follows the label through every spatial step
    keys = ["image", *labels]
    organs = [OrganTargetd(head["labels"])] if head else []
    det = load_transforms(["image", "pet", "label"]) + organs + preprocess_transforms(data, label_key=labels) + [
        BackgroundThresholdd("image", "label", PET_CHANNEL),  # the case's official background threshold
        EnsureTyped(keys=labels, dtype=torch.uint8, track_meta=True),
        SpatialPadd(keys=keys, spatial_size=list(roi)),
        *crops.indices(data),
    ]
    if data.get("cache_dtype"):
        det.append(CastImaged("image", data["cache_dtype"]))
    rand = [
        crops.crop(data, keys, roi),
        DeleteItemsd(keys=list(crops.keys)),
        EnsureTyped(keys="image", dtype=torch.float32, track_meta=True),
        EnsureTyped(keys=labels, dtype=torch.float32, track_meta=True),
        RandAffined(keys=keys, prob=float(aug["prob"]), rotate_range=[_radians(aug["rotate_deg"])] * 3,
                    scale_range=[float(aug["scale"])] * 3, mode=["bilinear"] + ["nearest"] * len(labels),
                    padding_mode="zeros", spatial_size=list(roi)),
        *[RandFlipd(keys=keys, prob=float(aug["flip_prob"]), spatial_axis=a) for a in range(3)],
    ]
    simulate = SimulateTrainingClicksd(label_key="label", pet_key=PET_CHANNEL, clicks_key="clicks",
                                       curriculum=dict(clicks.get("curriculum") or {}),
                                       max_clicks=int(clicks["max_clicks"]))
    if data.get("batch_transforms"):  # intensity and encoding on the batch (training.batch)
        from petclick.clicks.packing import PackClicksd

        rand += [simulate, PackClicksd("clicks", simulate.curriculum.capacity),
                 DeleteItemsd(keys=["pet_threshold"]), EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False)]
        return det, rand
    rand += [
        simulate,
        *[dict_cls(keys="image", **kwargs) for dict_cls, _, kwargs in _intensity(aug)],
        EncodeClicksd(image_key="image", clicks_key="clicks", **dict(clicks.get("encoding") or {})),
        DeleteItemsd(keys=["clicks", "pet_threshold"]),
        EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False),
    ]
    return det, rand


def _intensity(aug: Mapping[str, Any]) -> list[tuple[type, type, dict[str, Any]]]:
    """The intensity augmentation of a training patch: (dictionary transform, array transform, options)
    of smoothing, noise, shift and scale, each applied with probability `prob`."""
    p = float(aug["prob"])
    sigma = list(aug["smooth_sigma"])
    return [(RandGaussianSmoothd, RandGaussianSmooth, {"sigma_x": sigma, "sigma_y": sigma, "sigma_z": sigma, "prob": p}),
            (RandGaussianNoised, RandGaussianNoise, {"prob": p, "std": float(aug["noise_std"])}),
            (RandShiftIntensityd, RandShiftIntensity, {"offsets": float(aug["shift"]), "prob": p}),
            (RandScaleIntensityd, RandScaleIntensity, {"factors": float(aug["scale_intensity"]), "prob": p})]


def batch_stage(cfg: Mapping[str, Any]):
    """The BatchStage of `data.batch_transforms: true` (intensity augmentation, then the click
    channels, on the collated batch); None when the config keeps them per patch."""
    if not cfg["data"].get("batch_transforms"):
        return None
    from petclick.clicks.encoding import encoder_from_config
    from petclick.training.batch import BatchStage, RandGaussianNoiseTorch

    transforms = [(RandGaussianNoiseTorch if array_cls is RandGaussianNoise else array_cls)(**kwargs)
                  for _, array_cls, kwargs in _intensity(cfg["augment"])]
    return BatchStage(transforms, encoder_from_config(dict(cfg["clicks"].get("encoding") or {})))


def val_transforms(cfg: Mapping[str, Any]) -> list:
    """Deterministic chain of a validation case: loaded CT/PET -> network space, PET grid recorded."""
    return load_transforms(["image", "pet"]) + [RecordPetGridd("pet")] + preprocess_transforms(cfg["data"])


def _cache_workers(cfg: Mapping[str, Any]) -> int:
    return max(1, int(cfg["data"]["num_workers"]))


def train_dataset(cfg: Mapping[str, Any], files: list[dict], roi: Sequence[int], rank: int = 0,
                  world_size: int = 1) -> CacheDataset:
    """Cached training dataset; in DDP each rank caches and trains on its own shard of the files."""
    from petclick.training.organs import ORGAN_KEY, organ_head

    det, rand = train_transforms(cfg, roi)
    if world_size > 1:
        files = partition_dataset(files, num_partitions=world_size, shuffle=True, seed=0, even_divisible=True)[rank]
    items = [{"image": f["image"], "pet": f["pet"], "label": f["label"]} for f in files]
    if organ_head(cfg["network"]):
        for item, f in zip(items, files):
            item[ORGAN_KEY] = f.get(ORGAN_KEY)
        missing = [f.get("case", f["label"]) for f in files if not f.get(ORGAN_KEY)]
        if missing:
            log.warning("organ head: %d of %d training cases have no organ map (datalist key %r) and train without "
                        "the organ loss: %s", len(missing), len(files), ORGAN_KEY, ", ".join(map(str, missing[:10])))
    return CacheDataset(items, transform=Compose(det + rand), cache_rate=float(cfg["data"]["cache_rate"]),
                        num_workers=_cache_workers(cfg), progress=False)


def val_dataset(cfg: Mapping[str, Any], files: list[dict]) -> CacheDataset:
    """Cached validation dataset (image in network space, pet grid, plus label/clicks file paths)."""
    items = [{"image": f["image"], "pet": f["pet"], "label_file": f["label"], "clicks_file": f.get("clicks"),
              "case": f["case"]} for f in files]
    return CacheDataset(items, transform=Compose(val_transforms(cfg)), cache_rate=1.0,
                        num_workers=_cache_workers(cfg), progress=False)


def train_loader(cfg: Mapping[str, Any], dataset: CacheDataset, seed: int) -> DataLoader:
    """Shuffled loader; each item yields `num_crops` patches, so a batch holds batch_size * num_crops.
    With workers they persist across passes (the loop keeps one loader per repeat then, instead of
    starting the workers again every epoch)."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    workers = int(cfg["data"]["num_workers"])
    return DataLoader(dataset, batch_size=int(cfg["data"]["batch_size"]), shuffle=True,
                      num_workers=workers, generator=gen, drop_last=False, persistent_workers=workers > 0)
