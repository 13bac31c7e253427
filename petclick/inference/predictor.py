"""EnsemblePredictor: the (weighted) mean sigmoid probability of many checkpoints on the PET grid, streamed.

A CheckpointSet (petclick.inference.checkpoint_set: grouping by input, algorithm weights, model
cache) with the Predictor protocol: `.predict(case, clicks)` runs one full pass of the engine
(petclick.inference.engine, mode naive), which adds each sigmoid probability into one running sum
in the network's space and maps each group's sum onto the PET grid once. Peak memory is one model,
one input and two probability volumes, whatever the number of checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from petclick.core.errors import InputError
from petclick.core.yamlio import read_yaml
from petclick.inference.checkpoint_set import CheckpointSet
from petclick.inference.engine import EnsembleEngine
from petclick.inference.weights import check_algo_weights
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes
from petclick.runtime.checkpoint import find_checkpoints

log = logging.getLogger(__name__)


class EnsemblePredictor(CheckpointSet):
    """Predictor protocol over checkpoints: `.predict(case, clicks)` -> float32 probability on the PET grid.

    Arguments as CheckpointSet: overlap / amp / sw_batch_size / roi None keep each checkpoint's own
    inference settings; algo_weights {algorithm: weight >= 0} or None (the plain mean)."""

    @torch.no_grad()
    def predict_with(self, checkpoints: Iterable[str | Path], tta_flip_axes: Sequence[int], case: CaseVolumes,
                     clicks: Clicks | None) -> np.ndarray:
        """Mean sigmoid probability of `checkpoints` (each also mirrored along every subset of
        `tta_flip_axes`) on the PET grid of `case`; with `algo_weights`, the weighted mean of their
        algorithms' means. One full pass of petclick.inference.engine (mode naive)."""
        engine = EnsembleEngine(self, case, mode="naive", checkpoints=list(checkpoints), tta_axes=tta_flip_axes)
        return engine.update(clicks or Clicks())[0]

    def predict(self, case: CaseVolumes, clicks: Clicks | None) -> np.ndarray:
        return self.predict_with(self.checkpoints, self.tta_flip_axes, case, clicks)


def load_model_predictor(paths: str | Path | Sequence[str | Path], device: str | torch.device = "cpu",
                         algo_weights: Mapping[str, float] | None = None, **kwargs: Any) -> EnsemblePredictor:
    """An EnsemblePredictor over every `model.pt` under `paths` (AutoRunner work_dir, bundle folders,
    model folders, .pt files or checkpoint subset .json files of `petclick subset`); keyword arguments go to EnsemblePredictor. `algo_weights` None: the
    `ensemble_weights` of a work_dir's input.yaml among `paths`, if any (else the plain mean)."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    checkpoints = find_checkpoints(items)
    if algo_weights is None:
        algo_weights = work_dir_weights(items)
    else:
        algo_weights = check_algo_weights(algo_weights, "algo_weights")
        log.info("ensemble weights %s (given)", algo_weights)
    kwargs.setdefault("name", Path(items[0]).resolve().name if len(items) == 1 else f"ensemble-{len(checkpoints)}")
    log.info("ensemble of %d checkpoint(s) from %s", len(checkpoints), ", ".join(str(i) for i in items))
    return EnsemblePredictor(checkpoints, device=device, algo_weights=algo_weights, **kwargs)


def work_dir_weights(items: Sequence[str | Path]) -> dict[str, float] | None:
    """`ensemble_weights` of `<work_dir>/input.yaml` (AutoRunner's copy of its input) for the folders
    among `items` that hold one, and the `algo_weights` a checkpoint subset file (`petclick subset`)
    was chosen with, validated; None where none has the key. Sources that disagree raise
    InputError (give --algo-weights)."""
    from petclick.runtime.subsetfile import read_subset_file
    from petclick.runtime.checkpoint import SUBSET_SUFFIX

    found: dict[str, float] | None = None
    source: Path | None = None
    for item in items:
        if Path(item).is_file() and Path(item).suffix.lower() == SUBSET_SUFFIX:
            cfg_path, raw = Path(item), read_subset_file(item).get("algo_weights")
        else:
            cfg_path = Path(item) / "input.yaml"
            if not cfg_path.is_file():
                continue
            raw = read_yaml(cfg_path).get("ensemble_weights")
        if raw is None:
            continue
        weights = check_algo_weights(raw, f"{cfg_path} ensemble_weights")
        if found is not None and weights != found:
            raise InputError(cfg_path, f"ensemble_weights {weights} differ from {found} of {source}; "
                                       "choose with --algo-weights")
        found, source = weights, cfg_path
    if found is not None:
        log.info("ensemble weights %s from %s", found, source)
    return found
