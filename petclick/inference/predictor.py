"""EnsemblePredictor: the mean sigmoid probability of many checkpoints on the PET grid, streamed.

Checkpoints are grouped by what their input needs (preprocessing and click encoding): each group
preprocesses the case and encodes the clicks once, then runs its models one after the other,
adding each sigmoid probability into one running sum in the network's space; each group's sum is
mapped onto the PET grid once. Peak memory is one model, one input and two probability volumes,
whatever the number of checkpoints. Loaded models are kept in a small LRU cache (bounded in
bytes, `PETCLICK_MODEL_CACHE_MB`, default 2048) so the 11 protocol steps do not reload them.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from petclick.inference.checkpoint import build_model, find_checkpoints, read_checkpoint
from petclick.inference.clickinput import ClickEncoder
from petclick.inference.grid import to_pet_grid
from petclick.inference.preprocess import PreparedCase, prepare_arrays, preprocess_config
from petclick.inference.window import infer_config, make_inferer, sliding_window_logits
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes
from petclick.networks.roi import cover_roi

log = logging.getLogger(__name__)


class ModelCache:
    """Loaded models by (checkpoint path, modification time, device), least recently used evicted
    once their parameters exceed `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._models: OrderedDict[tuple, tuple[torch.nn.Module, int]] = OrderedDict()

    def get(self, path: Path, device: torch.device) -> torch.nn.Module:
        key = (str(path), os.path.getmtime(path), str(device))
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key][0]
        model = build_model(read_checkpoint(path), device)
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        if size <= self.max_bytes:
            self._models[key] = (model, size)
            while sum(s for _, s in self._models.values()) > self.max_bytes:
                self._models.popitem(last=False)
        return model

    def clear(self) -> None:
        self._models.clear()


MODELS = ModelCache(int(os.environ.get("PETCLICK_MODEL_CACHE_MB", "2048")) * 2**20)


def checkpoint_info(path: Path) -> dict[str, Any]:
    """What a checkpoint's input and sliding window need, without its weights."""
    ckpt = read_checkpoint(path)
    pre = dict(ckpt["preprocess"])
    return {"preprocess": preprocess_config(pre), "encoding": pre.get("encoding"),
            "infer": infer_config(ckpt.get("infer"), pre.get("roi")), "name": ckpt["network"]["name"],
            "network_kwargs": dict(ckpt["network"].get("kwargs") or {})}


def flip_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of the mirror axes (nnU-Net-style test-time mirroring): () first."""
    axes = sorted({int(a) for a in axes})
    if any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"mirror axes must be among 0, 1, 2; got {axes}")
    return [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]


class EnsemblePredictor:
    """Predictor protocol over checkpoints: `.predict(case, clicks)` -> float32 probability on the PET grid.

    overlap / amp / sw_batch_size / roi: None keeps each checkpoint's own inference settings."""

    def __init__(self, checkpoints: Sequence[str | Path], device: str | torch.device = "cpu",
                 tta_flip_axes: Sequence[int] = (), overlap: float | None = None, amp: bool | None = None,
                 sw_batch_size: int | None = None, roi: Sequence[int] | None = None, name: str | None = None):
        self.checkpoints = [Path(c) for c in checkpoints]
        if not self.checkpoints:
            raise ValueError("EnsemblePredictor needs at least one checkpoint")
        self.device = torch.device(device)
        self.tta_flip_axes = tuple(tta_flip_axes)
        self.settings = {"overlap": overlap, "amp": amp, "sw_batch_size": sw_batch_size, "roi": roi}
        self.info = {p: checkpoint_info(p) for p in self.checkpoints}
        self.name = name or f"ensemble-{len(self.checkpoints)}"
        self._prepared: dict[str, PreparedCase] = {}
        self._prepared_for: np.ndarray | None = None
        self._encoders: dict[str, ClickEncoder] = {}

    def _input_key(self, path: Path) -> str:
        info = self.info[path]
        return json.dumps([info["preprocess"], info["encoding"]], sort_keys=True, default=str)

    def _prepare(self, case: CaseVolumes, key: str, pre: dict) -> PreparedCase:
        if self._prepared_for is not case.pet.array:  # a new case: drop the previous one's inputs
            self._prepared, self._prepared_for = {}, case.pet.array
        if key not in self._prepared:
            self._prepared[key] = prepare_arrays(pre, case.ct.array, case.pet.array, case.affine)
        return self._prepared[key]

    def _settings(self, path: Path) -> dict[str, Any]:
        out = dict(self.info[path]["infer"])
        out.update({k: v for k, v in self.settings.items() if v is not None})
        if self.device.type != "cuda":
            out["amp"] = False
        return out

    @torch.no_grad()
    def predict_with(self, checkpoints: Iterable[str | Path], tta_flip_axes: Sequence[int], case: CaseVolumes,
                     clicks: Clicks | None) -> np.ndarray:
        """Mean sigmoid probability of `checkpoints` (each also mirrored along every subset of
        `tta_flip_axes`) on the PET grid of `case`."""
        clicks = clicks or Clicks()
        groups: dict[str, list[Path]] = {}
        for c in checkpoints:
            path = Path(c)
            if path not in self.info:
                self.info[path] = checkpoint_info(path)
            groups.setdefault(self._input_key(path), []).append(path)
        if not groups:
            raise ValueError("predict_with needs at least one checkpoint")
        flips = flip_combinations(tta_flip_axes)
        total, count = None, 0
        for key, paths in groups.items():
            info = self.info[paths[0]]
            prepared = self._prepare(case, key, info["preprocess"])
            encoder = self._encoders.setdefault(key, ClickEncoder(info["encoding"]))
            x = encoder(prepared, clicks, self.device)[None].float()
            acc = None
            for path in paths:
                s = self._settings(path)
                net = self.info[path]
                roi = cover_roi(s["roi"], x.shape[2:], net["name"], **net["network_kwargs"])
                inferer = make_inferer(roi, s["overlap"], s["sw_batch_size"], s["mode"], self.device)
                model = MODELS.get(path, self.device)
                for axes in flips:
                    logits = sliding_window_logits(model, x, inferer, s["amp"], s.get("amp_dtype", "float16"), axes)
                    prob = torch.sigmoid(logits[0, :1])
                    acc = prob if acc is None else acc.add_(prob)
                    count += 1
                del model
            pet = to_pet_grid(acc, prepared.affine, prepared.pet_affine, prepared.pet_shape)
            total = pet if total is None else total.add_(pet)
        return (total[0] / count).cpu().numpy().astype(np.float32)

    def predict(self, case: CaseVolumes, clicks: Clicks | None) -> np.ndarray:
        return self.predict_with(self.checkpoints, self.tta_flip_axes, case, clicks)


def load_model_predictor(paths: str | Path | Sequence[str | Path], device: str | torch.device = "cpu",
                         **kwargs: Any) -> EnsemblePredictor:
    """An EnsemblePredictor over every `model.pt` under `paths` (AutoRunner work_dir, bundle folders,
    model folders or .pt files); keyword arguments go to EnsemblePredictor."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    checkpoints = find_checkpoints(items)
    kwargs.setdefault("name", Path(items[0]).resolve().name if len(items) == 1 else f"ensemble-{len(checkpoints)}")
    log.info("ensemble of %d checkpoint(s) from %s", len(checkpoints), ", ".join(str(i) for i in items))
    return EnsemblePredictor(checkpoints, device=device, **kwargs)
