"""The checkpoint set of an ensemble: what every pass over its checkpoints needs, whatever runs it.

Checkpoints are grouped by what their input needs (preprocessing and click encoding): each group
preprocesses the case and encodes the clicks once, then runs its models one after the other.

Per-algorithm weights (`algo_weights`, see petclick/inference/weights.py): each algorithm's selected
checkpoints are averaged and the algorithms combined by w_a / sum w_a. Since that mean is linear,
each prediction is added into one running sum scaled by w_a / n_a (n_a: selected checkpoints of its
algorithm), so weighting costs no memory. Without weights every checkpoint weighs the same.
`checkpoints` are ordered round-robin over algorithms so that the first n (what the time-budget
planner keeps) mix algorithms. Loaded models are kept in a small LRU cache (bounded in bytes,
`PETCLICK_MODEL_CACHE_MB`, default 2048) so the 11 protocol steps do not reload them.

The engine (petclick.inference.engine) runs a CheckpointSet over a case; EnsemblePredictor
(petclick.inference.predictor) is a CheckpointSet that predicts through that engine.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from petclick.core.errors import InputError
from petclick.inference.weights import algo_of, bundle_weights, check_algo_weights, interleave_by_algo
from petclick.io.images import CaseVolumes
from petclick.runtime.checkpoint import build_model, read_checkpoint
from petclick.runtime.clickinput import ClickEncoder
from petclick.runtime.preprocess import PreparedCase, prepare_arrays, preprocess_config
from petclick.runtime.window import infer_config, prepare_network

log = logging.getLogger(__name__)
#: Overrides every checkpoint's `infer.backend` (auto | torch | onnxruntime), e.g. to compare backends.
BACKEND_ENV = "PETCLICK_BACKEND"


class ModelCache:
    """Loaded models by (checkpoint path, modification time, device), least recently used evicted
    once their parameters exceed `max_bytes`. Each is the window network of its checkpoint's
    `infer` settings (petclick.runtime.window.prepare_network: ONNX Runtime on CPU by default),
    ready for `window_logits`; checkpoints of one architecture share one ONNX export."""

    def __init__(self, max_bytes: int, fixed: bool = True):
        self.max_bytes = int(max_bytes)
        self.fixed = bool(fixed)  # False: `reserve` grows the limit to the ensembles loaded
        self._models: OrderedDict[tuple, tuple[torch.nn.Module, int]] = OrderedDict()
        self._lock = threading.Lock()     # sessions of a server run in parallel threads

    def get(self, path: Path, device: torch.device) -> torch.nn.Module:
        with self._lock:
            return self._get(path, device)

    def _get(self, path: Path, device: torch.device) -> torch.nn.Module:
        key = (str(path), os.path.getmtime(path), str(device))
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key][0]
        ckpt = read_checkpoint(path)
        torch_model = build_model(ckpt, device)
        size = sum(p.numel() * p.element_size() for p in torch_model.parameters())
        arch = json.dumps([ckpt["network"], ckpt["in_channels"], ckpt.get("out_channels", 1),
                           ckpt.get("organ_head")], sort_keys=True, default=str)
        infer = infer_config(ckpt.get("infer"))
        infer["backend"] = os.environ.get(BACKEND_ENV) or infer["backend"]
        model = prepare_network(torch_model, infer, device, arch)
        if size <= self.max_bytes:
            self._models[key] = (model, size)
            while sum(s for _, s in self._models.values()) > self.max_bytes:
                self._models.popitem(last=False)
        return model

    def reserve(self, paths: Sequence[Path], device: torch.device) -> None:
        """Grow the limit (unless set by PETCLICK_MODEL_CACHE_MB) to hold every checkpoint of `paths`
        (their weights; twice on CPU, where an ONNX Runtime session holds them too), when that fits
        the device's memory (petclick.runtime.memory.fit_cache); an InputError naming the setting when not."""
        if self.fixed:
            return
        from petclick.runtime.memory import fit_cache

        factor = 2 if torch.device(device).type == "cpu" else 1
        needed = factor * sum(os.path.getsize(p) for p in paths)
        if needed > self.max_bytes:
            self.max_bytes = fit_cache(needed, f"the model cache of {len(paths)} checkpoint(s)",
                                       "PETCLICK_MODEL_CACHE_MB", device)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


#: Loaded models: PETCLICK_MODEL_CACHE_MB fixes the limit; unset, it starts at 2 GB and grows to the
#: ensembles loaded (ModelCache.reserve).
MODELS = ModelCache(int(os.environ.get("PETCLICK_MODEL_CACHE_MB", "2048")) * 2**20,
                    fixed="PETCLICK_MODEL_CACHE_MB" in os.environ)


def checkpoint_info(path: Path) -> dict[str, Any]:
    """What a checkpoint's input and sliding window need, and its algorithm, without its weights."""
    ckpt = read_checkpoint(path)
    pre = dict(ckpt["preprocess"])
    return {"preprocess": preprocess_config(pre), "encoding": pre.get("encoding"),
            "infer": infer_config(ckpt.get("infer"), pre.get("roi")), "name": ckpt["network"]["name"],
            "network_kwargs": dict(ckpt["network"].get("kwargs") or {}), "algo": algo_of(ckpt)}


def flip_combinations(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of the mirror axes (nnU-Net-style test-time mirroring): () first."""
    axes = sorted({int(a) for a in axes})
    if any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"mirror axes must be among 0, 1, 2; got {axes}")
    return [c for n in range(len(axes) + 1) for c in itertools.combinations(axes, n)]


class CheckpointSet:
    """Checkpoints with their settings, weights and per-case prepared inputs (see the module docstring).

    overlap / amp / sw_batch_size / roi: None keeps each checkpoint's own inference settings.
    algo_weights: {algorithm: weight >= 0} (absent algorithms weigh 1, 0 drops one, see module
    docstring); None keeps the plain mean over every checkpoint. `.algo_weights` then holds the
    weight of every algorithm found, `.algos` the checkpoints kept per algorithm."""

    def __init__(self, checkpoints: Sequence[str | Path], device: str | torch.device = "cpu",
                 tta_flip_axes: Sequence[int] = (), overlap: float | None = None, amp: bool | None = None,
                 sw_batch_size: int | None = None, roi: Sequence[int] | None = None, name: str | None = None,
                 algo_weights: Mapping[str, float] | None = None):
        paths = [Path(c) for c in checkpoints]
        if not paths:
            raise ValueError("an ensemble needs at least one checkpoint")
        self.device = torch.device(device)
        self.tta_flip_axes = tuple(tta_flip_axes)
        self.settings = {"overlap": overlap, "amp": amp, "sw_batch_size": sw_batch_size, "roi": roi}
        self.info = {p: checkpoint_info(p) for p in paths}
        MODELS.reserve(paths, self.device)
        self.algo_weights = self._weights_found(paths, algo_weights)
        self.checkpoints = self._ordered(paths)
        self.algos: dict[str, list[Path]] = {}
        for p in self.checkpoints:
            self.algos.setdefault(self.algo(p), []).append(p)
        self.name = name or f"ensemble-{len(self.checkpoints)}"
        self._prepared: dict[str, PreparedCase] = {}
        self._prepared_for: np.ndarray | None = None
        self._prepare_lock = threading.Lock()    # sessions of several cases prepare in parallel threads
        self._encoders: dict[str, ClickEncoder] = {}

    def algo(self, path: Path) -> str:
        """The algorithm of a checkpoint (its `algo`, else its network name)."""
        return self.info[path]["algo"]

    def _weights_found(self, paths: Sequence[Path], weights: Mapping[str, float] | None) -> dict[str, float] | None:
        """{algorithm: weight} for every algorithm among `paths` (absent from `weights`: 1); None without weights."""
        if weights is None:
            return None
        given = check_algo_weights(weights, "ensemble_weights")
        found = list(dict.fromkeys(self.algo(p) for p in paths))
        unknown = sorted(set(given) - set(found))
        if unknown:
            log.warning("ensemble weights for %s: no checkpoint of that algorithm (found %s)", unknown, found)
        return {a: given.get(a, 1.0) for a in found}

    def _ordered(self, paths: Sequence[Path]) -> list[Path]:
        """`paths` without weight-0 algorithms, round-robin over algorithms (heaviest first)."""
        weights = self.algo_weights or {}
        kept = [p for p in paths if weights.get(self.algo(p), 1.0) > 0]
        if not kept:
            raise InputError("ensemble_weights", f"every algorithm present ({sorted(weights)}) has weight 0")
        return interleave_by_algo(kept, [self.algo(p) for p in kept], weights)

    def _scales(self, paths: Sequence[Path]) -> list[float]:
        """Per-checkpoint scale of its predictions: 1 without weights (plain mean), else w_a / n_a over
        the selected `paths`; selected algorithms all of weight 0 raise InputError."""
        if self.algo_weights is None:
            return [1.0] * len(paths)
        algos = [self.algo(p) for p in paths]
        scales = bundle_weights(algos, self.algo_weights)
        if not any(scales):
            raise InputError("ensemble_weights", f"every selected algorithm ({sorted(set(algos))}) has weight 0")
        return scales

    def _input_key(self, path: Path) -> str:
        info = self.info[path]
        return json.dumps([info["preprocess"], info["encoding"]], sort_keys=True, default=str)

    def _prepare(self, case: CaseVolumes, key: str, pre: dict) -> PreparedCase:
        with self._prepare_lock:
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

    def _groups(self, checkpoints: Iterable[str | Path]) -> dict[str, list[tuple[Path, float]]]:
        """Selected checkpoints with their scales, grouped by input; weight-0 ones left out."""
        paths = [Path(c) for c in checkpoints]
        for path in paths:
            if path not in self.info:
                self.info[path] = checkpoint_info(path)
        if not paths:
            raise ValueError("predict_with needs at least one checkpoint")
        groups: dict[str, list[tuple[Path, float]]] = {}
        for path, scale in zip(paths, self._scales(paths)):
            if scale > 0:
                groups.setdefault(self._input_key(path), []).append((path, scale))
        return groups
