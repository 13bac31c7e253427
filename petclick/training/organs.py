"""Organ supervision in training (YAML `network.organ_head`): which organ labels become classes, and
the organ target of each training case.

    network:
      organ_head:
        labels: [brain, [kidneys, bladder], liver, 12]   # phantom organ names or label values
        weight: 0.5                                      # organ loss x weight, added to the lesion loss
        loss: dice_ce                                    # dice_ce (default) | ce

Class 0 is every voxel of no listed organ; class i is the i-th item of `labels` (a list item
merges several labels into one class, e.g. left and right kidney of a TotalSegmentator map). Names
are the phantom organ labels (petclick.phantoms.labels.ORGAN_LABELS); real organ maps are given by
their integer values. Each case's organ map is the datalist key `organs` (the phantom cohort writes
`labelsTr_organs/<case>.nii.gz`); a case without one trains with its organ loss masked out
(`organs_valid` = 0), so its loss is the lesion loss alone.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from monai.transforms import LoadImage, MapTransform

from petclick.core.errors import InputError
from petclick.phantoms.labels import ORGAN_LABELS

ORGAN_KEY = "organs"
VALID_KEY = "organs_valid"
SOURCE = "network.organ_head"


def organ_head(network: Mapping[str, Any]) -> dict[str, Any] | None:
    """The resolved organ head of a `network` config section: {"labels": [[value, ...] per class 1..],
    "classes": n + 1, "weight", "loss"}; None without one. Unknown organ names raise InputError
    listing the known ones (the structure was checked by petclick.config.schema)."""
    head = network.get("organ_head")
    if not head:
        return None
    groups: list[list[int]] = []
    for item in head["labels"]:
        group = []
        for x in item if isinstance(item, (list, tuple)) else [item]:
            if isinstance(x, str):
                name = x.strip().lower()
                if name not in ORGAN_LABELS:
                    raise InputError(SOURCE, f"unknown organ name {x!r}; known: {', '.join(ORGAN_LABELS)} "
                                             "(or give the label value, an integer)")
                group.append(ORGAN_LABELS[name])
            else:
                group.append(int(x))
        groups.append(group)
    values = [v for g in groups for v in g]
    if len(set(values)) != len(values):
        raise InputError(SOURCE, f"labels {head['labels']!r} name one label value twice")
    return {"labels": groups, "classes": len(groups) + 1, "weight": float(head.get("weight", 1.0)),
            "loss": str(head.get("loss", "dice_ce"))}


def class_table(groups: list[list[int]]) -> np.ndarray:
    """Lookup table organ label value -> class (0 for every value not listed)."""
    table = np.zeros(max(v for g in groups for v in g) + 1, np.uint8)
    for c, group in enumerate(groups, start=1):
        table[group] = c
    return table


class OrganTargetd(MapTransform):
    """The organ class map of a case under `organs` (uint8, on the label's grid and metadata, so
    every later spatial transform treats it as the label) and `organs_valid` (1.0, or 0.0 for a case
    without an organ map: zeros then, and its organ loss is masked out). Runs right after loading;
    an organ map on another grid than the label raises InputError naming the file."""

    def __init__(self, groups: list[list[int]], label_key: str = "label", organ_key: str = ORGAN_KEY,
                 valid_key: str = VALID_KEY):
        super().__init__(keys=[label_key])
        self.table = class_table(groups)
        self.label_key, self.organ_key, self.valid_key = label_key, organ_key, valid_key
        self.loader = LoadImage(image_only=True, ensure_channel_first=True)

    def __call__(self, data):
        d = dict(data)
        label = d[self.label_key]
        out = torch.zeros_like(label, dtype=torch.uint8)  # a MetaTensor: the label's affine and metadata
        path = d.get(self.organ_key)
        if path:
            organs = np.asarray(self.loader(path)).astype(np.int64)
            if tuple(organs.shape) != tuple(label.shape):
                raise InputError(path, f"organ map shape {tuple(organs.shape[1:])} differs from the label's "
                                       f"{tuple(label.shape[1:])}")
            inside = (organs >= 0) & (organs < len(self.table))
            out[...] = torch.as_tensor(np.where(inside, self.table[np.clip(organs, 0, len(self.table) - 1)], 0))
        d[self.organ_key] = out
        d[self.valid_key] = 1.0 if path else 0.0
        return d


def organ_target(batch: Mapping[str, Any], device: torch.device) -> torch.Tensor:
    """The organ loss target of a collated batch: the class maps (B, 1, ...) as float, with every
    voxel of a sample without an organ map set to -1 (what OrganLoss masks out)."""
    target = torch.as_tensor(batch[ORGAN_KEY]).to(device, non_blocking=True).float()
    valid = torch.as_tensor(batch[VALID_KEY]).to(device).reshape(-1).bool()
    return torch.where(valid.view(-1, *([1] * (target.ndim - 1))), target, torch.full_like(target, -1.0))
