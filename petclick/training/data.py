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
Validation: the same deterministic part without the label, plus the case's lesion mask on the PET
grid (uint8, cached with the image: the scorer never re-reads it); each case's JSON clicks are mapped
through the case's geometry at validation time (petclick.runtime.clickinput). The validation cases are
a fixed tracer-balanced subset of the fold (`training.val_cases`), shared by the ranks under torchrun.

Caches follow the run plan (petclick.training.plan): the cases that fit the RAM budget in RAM (in the
planned dtype), the rest in a disk cache (MONAI PersistentDataset under `data.cache_dir`) or, without
one, preprocessed at every load.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, PersistentDataset, partition_dataset
from torch.utils.data import ConcatDataset
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
    """Keep the loaded PET grid (affine, shape) under `<prefix>_affine` / `<prefix>_shape` (default
    `pet_affine` / `pet_shape`): where predictions go back to for the official metrics. In a chain that
    resamples, record under another prefix and rename after it (RenameKeysd): MONAI's Spacingd updates
    every `pet_*` item as if it were the PET's metadata."""

    def __init__(self, pet_key: str = "pet", prefix: str = "pet"):
        super().__init__(keys=[pet_key])
        self.pet_key, self.prefix = pet_key, prefix

    def __call__(self, data):
        d = dict(data)
        d[f"{self.prefix}_affine"] = np.asarray(d[self.pet_key].affine, np.float64)
        d[f"{self.prefix}_shape"] = np.asarray(d[self.pet_key].shape[1:], np.int64)
        return d


class RenameKeysd(MapTransform):
    """Move items to new keys ({old: new})."""

    def __init__(self, names: Mapping[str, str]):
        super().__init__(keys=list(names))
        self.names = dict(names)

    def __call__(self, data):
        d = dict(data)
        for old, new in self.names.items():
            d[new] = d.pop(old)
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
    if data.get("cache_dtype") and data["cache_dtype"] not in ("auto", "float32"):  # auto: resolved by the plan
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


class LesionMaskd(MapTransform):
    """Load `label_file` (the lesion mask on the PET grid) as uint8 `label_mask` with its `label_spacing`:
    cached with the validation image, so validation never re-reads labels from disk."""

    def __init__(self, file_key: str = "label_file"):
        super().__init__(keys=[file_key], allow_missing_keys=True)
        self.file_key = file_key

    def __call__(self, data):
        from petclick.io.images import load_volume

        d = dict(data)
        if d.get(self.file_key):
            vol = load_volume(d[self.file_key], dtype=np.uint8)
            d["label_mask"] = np.ascontiguousarray(vol.array != 0).astype(np.uint8)
            d["label_spacing"] = tuple(float(s) for s in vol.spacing)
        return d


def val_transforms(cfg: Mapping[str, Any], dtype: str | None = None) -> list:
    """Deterministic chain of a validation case: loaded CT/PET -> network space, PET grid recorded, the
    lesion mask loaded; the image cast to `dtype` (float16 halves the cache) when given."""
    out = load_transforms(["image", "pet"]) + [RecordPetGridd("pet", prefix="grid")] + preprocess_transforms(cfg["data"]) + [
        RenameKeysd({"grid_affine": "pet_affine", "grid_shape": "pet_shape"}), LesionMaskd("label_file")]
    if dtype and dtype != "float32":
        out.append(CastImaged("image", dtype))
    return out


def _cache_workers(cfg: Mapping[str, Any], plan: Any = None) -> int:
    """Threads that fill a cache: the plan's (`data.num_workers` shared by the torchrun ranks of the node,
    fewer when the largest cases preprocessed at once would not fit: each thread holds a whole case while
    it is preprocessed, petclick.training.plan.fitting_threads); without a plan the workers' share."""
    from petclick.training.plan import cache_threads

    if plan is not None and getattr(plan, "threads", 0):
        return int(plan.threads)
    return cache_threads(int(cfg["data"]["num_workers"]))


def validation_subset(files: Sequence[Mapping[str, Any]], n: int | None, seed: int = 0) -> list[dict]:
    """A fixed subset of `n` validation entries balanced by tracer (round robin over the tracers, each
    tracer's cases in a seeded order); every entry when `n` is None or not smaller. The order is kept."""
    files = [dict(f) for f in files]
    if n is None or int(n) >= len(files):
        return files
    from petclick.io.datalist import CASE_ID

    groups: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        m = CASE_ID.match(str(f.get("case", "")))
        tracer = str(f.get("tracer") or (m["tracer"].lower() if m else "unknown"))
        groups.setdefault(tracer, []).append(i)
    rng = np.random.default_rng(int(seed))
    queues = {t: [idx[j] for j in rng.permutation(len(idx))] for t, idx in sorted(groups.items())}
    chosen: list[int] = []
    while len(chosen) < int(n):
        for t in sorted(queues):
            if queues[t] and len(chosen) < int(n):
                chosen.append(queues[t].pop(0))
    return [files[i] for i in sorted(chosen)]


def require_clicks(files: Sequence[Mapping[str, Any]], steps: Sequence[int], source: Any) -> None:
    """InputError naming `source` when click steps (> 0) would be scored on cases without a click file:
    they would silently score 0 clicks at every step."""
    missing = [str(f.get("case", f.get("image"))) for f in files if not f.get("clicks")]
    if missing and max((int(s) for s in steps), default=0) > 0:
        raise InputError(source, f"{len(missing)} of {len(files)} validation cases have no click file "
                                 f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): click steps "
                                 f"{list(steps)} would score 0 clicks. Write them with `petclick simulate-clicks "
                                 "--dataroot DIR` and list them with `petclick datalist`, or set clicks.val_steps: [0]")


def rank_share(files: Sequence[Any], rank: int, world_size: int) -> list:
    """Rank `rank`'s share of `files` (every world_size-th from rank): the validation split under torchrun."""
    return list(files)[int(rank)::max(1, int(world_size))]


def _header_shape(path: str | Path) -> tuple[tuple[int, ...], tuple[float, ...]]:
    import nibabel as nib

    img = nib.load(str(path))
    return tuple(int(x) for x in img.shape[:3]), tuple(float(x) for x in img.header.get_zooms()[:3])


def cache_dir_for(cfg: Mapping[str, Any]) -> Path | None:
    """The disk cache folder: `data.cache_dir`, or (auto) `<work_dir>/cache` next to the bundle
    (`ckpt_path`'s grandparent), shared by the folds; None when set to null."""
    value = cfg["data"].get("cache_dir", "auto")
    if value is None:
        return None
    if value == "auto":
        if not cfg.get("ckpt_path"):
            return None
        return Path(cfg["ckpt_path"]).resolve().parent.parent / "cache"
    return Path(value)


def fold_cache_plan(cfg: Mapping[str, Any], train_files: Sequence[Mapping[str, Any]],
                    val_files: Sequence[Mapping[str, Any]], world_size: int = 1, available: int | None = None):
    """The cache plan (petclick.training.plan.plan_cache) of this rank's training and validation cases,
    from the image headers (no voxel is read)."""
    from petclick.training.distributed import rank_device
    from petclick.training.plan import local_ranks, network_voxels, plan_cache, preprocess_peaks

    data = cfg["data"]
    spacing = data.get("spacing") if data.get("spacing") not in ("auto",) else None
    roi = [int(r) for r in data["roi"]]
    shapes = [_header_shape(f["pet"]) for f in list(train_files) + list(val_files)]
    vox = [network_voxels(s, sp, spacing, roi) for s, sp in shapes]
    n_t = len(train_files)
    t_vox = float(np.mean(vox[:n_t])) if n_t else 0.0
    v_vox = float(np.mean(vox[n_t:])) if val_files else 0.0
    v_pet = float(np.mean([math.prod(s) for s, _ in shapes[n_t:]])) if val_files else 0.0
    ranks = min(max(1, world_size), local_ranks()) if world_size > 1 else 1
    loads = [preprocess_peaks(s, sp, spacing, validation=n >= n_t) for n, (s, sp) in enumerate(shapes)]
    cuda = rank_device(cfg["training"].get("device")).type == "cuda"
    return plan_cache(data, n_t, t_vox, len(val_files), v_vox, v_pet, available, ranks, cache_dir_for(cfg),
                      case_loads=loads[:n_t], val_loads=loads[n_t:], cuda=cuda)


def train_dataset(cfg: Mapping[str, Any], files: list[dict], roi: Sequence[int], rank: int = 0,
                  world_size: int = 1, plan: Any = None):
    """Training dataset of this rank's shard of `files` (DDP: each rank its own shard), cached as
    `plan` says (petclick.training.plan.CachePlan; default: planned here for this shard alone): the
    first cases in RAM, the rest in the disk cache or preprocessed at every load."""
    from petclick.training.organs import ORGAN_KEY, organ_head

    if world_size > 1:
        files = partition_dataset(files, num_partitions=world_size, shuffle=True, seed=0, even_divisible=True)[rank]
    if plan is None:
        plan = fold_cache_plan(cfg, files, [], world_size)
    cfg = {**cfg, "data": {**cfg["data"], "cache_dtype": plan.dtype}}
    det, rand = train_transforms(cfg, roi)
    items = [{"image": f["image"], "pet": f["pet"], "label": f["label"]} for f in files]
    if organ_head(cfg["network"]):
        for item, f in zip(items, files):
            item[ORGAN_KEY] = f.get(ORGAN_KEY)
        missing = [f.get("case", f["label"]) for f in files if not f.get(ORGAN_KEY)]
        if missing:
            log.warning("organ head: %d of %d training cases have no organ map (datalist key %r) and train without "
                        "the organ loss: %s", len(missing), len(files), ORGAN_KEY, ", ".join(map(str, missing[:10])))
    transform = Compose(det + rand)
    ram = min(len(items), int(plan.ram_cases))
    log.info("training cache: %d of %d cases in RAM (%s, %.0f MB each), %d on disk (%s), %d uncached: %s; %d "
             "cache thread(s)", ram, len(items), plan.dtype, plan.case_bytes / 2**20, plan.disk_cases, plan.cache_dir,
             plan.uncached, plan.reason, _cache_workers(cfg, plan))
    if not plan.disk_cases or ram >= len(items):
        return CacheDataset(items, transform=transform, cache_num=ram, cache_rate=1.0,
                            num_workers=_cache_workers(cfg, plan), progress=False)
    from monai.data.utils import json_hashing

    parts = [] if not ram else [CacheDataset(items[:ram], transform=transform, cache_rate=1.0,
                                             num_workers=_cache_workers(cfg, plan), progress=False)]
    Path(plan.cache_dir).mkdir(parents=True, exist_ok=True)
    parts.append(PersistentDataset(items[ram:], transform=transform, cache_dir=plan.cache_dir,
                                   hash_transform=json_hashing))
    return ConcatDataset(parts)


def val_dataset(cfg: Mapping[str, Any], files: list[dict], plan: Any = None) -> CacheDataset:
    """Cached validation dataset (image in network space, pet grid, the lesion mask, the clicks file
    path): the cases that fit the plan's validation budget cached (all of them by default)."""
    items = [{"image": f["image"], "pet": f["pet"], "label_file": f["label"], "clicks_file": f.get("clicks"),
              "case": f["case"]} for f in files]
    dtype = None if plan is None else plan.dtype
    n = len(items)
    if plan is not None and plan.val_bytes and plan.budget_bytes < plan.val_bytes:
        n = int(n * plan.budget_bytes / plan.val_bytes)
        log.warning("validation cache: %d of %d cases fit the RAM budget; the rest are read at every validation",
                    n, len(items))
    return CacheDataset(items, transform=Compose(val_transforms(cfg, dtype)), cache_num=n, cache_rate=1.0,
                        num_workers=_cache_workers(cfg, plan), progress=False)


def train_loader(cfg: Mapping[str, Any], dataset, seed: int) -> DataLoader:
    """Shuffled loader; each item yields `num_crops` patches, so a batch holds batch_size * num_crops.
    With workers they persist across passes (the loop keeps one loader per repeat then, instead of
    starting the workers again every epoch)."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    workers = int(cfg["data"]["num_workers"])
    return DataLoader(dataset, batch_size=int(cfg["data"]["batch_size"]), shuffle=True,
                      num_workers=workers, generator=gen, drop_last=False, persistent_workers=workers > 0)
