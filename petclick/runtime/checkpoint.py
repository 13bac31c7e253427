"""Self-describing checkpoints: everything inference needs is inside the .pt file.

    {"format": "petclick-checkpoint-1", "state_dict": ..., "network": {"name", "kwargs"},
     "in_channels": 4, "out_channels": 1,
     "preprocess": {"spacing", "ct_window", "pet_clip", "pet_scale", "crop_body", "roi", "encoding", "max_clicks"},
     "infer": {"roi", "overlap", "sw_batch_size", "mode", "amp"},
     "algo", "fold", "repeat", "epoch", "best_metric", "metrics",
     "organ_head": {"labels", "classes", "weight", "loss"}}      # only when trained with an organ head

A checkpoint with `organ_head` holds a network with `classes` organ channels after its lesion
channels (petclick.networks.organ_head); `build_model` returns it wrapped so that it outputs only
the lesion channels, so every inference path ignores the organ head. A checkpoint without the key
(every one written before organ heads existed) loads as it always did.

Training writes `model.pt` (best validation) and `last.pt` (resume state: also optimizer,
scheduler, scaler, RNG) into `<bundle>/model/repeat<r>/`. Inference collects only `model.pt`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from petclick.core.atomic import atomic_path
from petclick.core.errors import InputError
from petclick.io.torchfile import load_torch_file
from petclick.runtime.subsetfile import read_subset

log = logging.getLogger(__name__)
FORMAT = "petclick-checkpoint-1"
BEST_NAME = "model.pt"
LAST_NAME = "last.pt"
REQUIRED = ("state_dict", "network", "in_channels", "preprocess")
#: A model path with this suffix is a checkpoint subset file (petclick.runtime.subsetfile).
SUBSET_SUFFIX = ".json"


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write `payload` atomically (temp file then rename), so a kill never leaves half a checkpoint."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **payload}, tmp)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a petclick checkpoint (weights_only: plain types and tensors only); a missing,
    unreadable or foreign file raises InputError naming it."""
    path = Path(path)
    ckpt = load_torch_file(path, "checkpoint", map_location)
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        raise InputError(path, f"not a self-describing petclick checkpoint (needs keys {list(REQUIRED)})")
    return ckpt


def build_model(ckpt: Mapping[str, Any], device: str | torch.device = "cpu") -> torch.nn.Module:
    """The network of a checkpoint dict, weights loaded, in eval mode on `device`; with an organ head
    wrapped as LesionOutput (the lesion channels only)."""
    from petclick.networks.factory import build_network
    from petclick.networks.organ_head import LesionOutput

    net = ckpt["network"]
    head = ckpt.get("organ_head")
    out_channels = int(ckpt.get("out_channels", 1))
    model = build_network(net["name"], int(ckpt["in_channels"]), out_channels,
                          organ_classes=int(head["classes"]) if head else 0, **dict(net.get("kwargs") or {}))
    model.load_state_dict(ckpt["state_dict"])
    if head:
        model = LesionOutput(model, out_channels)
    return model.to(device).eval()


def find_checkpoints(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Every inference checkpoint under `paths`: .pt files as given; folders (an AutoRunner work_dir,
    bundle folders, model folders) searched recursively for `model.pt`; a `.json` file is a
    checkpoint subset (`petclick subset`, petclick.runtime.subsetfile.read_subset) and gives its
    checkpoints in its order (a .json that is not one raises InputError naming it). Without
    duplicates; nothing found raises InputError."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    found: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_file() and p.suffix.lower() == SUBSET_SUFFIX:
            found += [c.resolve() for c in read_subset(p)]
        elif p.is_file():
            found.append(p.resolve())
        elif p.is_dir():
            found += sorted(q.resolve() for q in p.rglob(BEST_NAME) if "algorithm_templates" not in q.parts)
        else:
            raise InputError(p, "no such checkpoint file or folder")
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputError(", ".join(str(i) for i in items), f"no {BEST_NAME} checkpoint found")
    return unique
