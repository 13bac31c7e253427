"""Validation with the challenge's metrics: each validation case at protocol steps (0, 5, 10 by
default) with the first k clicks of its JSON click file, scored on the original PET grid.

The steps of a case share one tiled sliding window (petclick/runtime/tiles.py): a later step
re-runs only the tiles its new clicks reach, with the result of a full pass. Click files follow
the click policy of every command (petclick.io.clickpolicy, strict: a click outside the volume or
over the budget is an error naming the file).

Score (what `best_avg_dice_score` holds): mean Dice over the steps and the cases with lesions;
when no validation case has a lesion, the mean of 1 / (1 + false-positive mL) instead (1 = clean).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from petclick.runtime.clickinput import ClickEncoder
from petclick.runtime.grid import to_pet_grid
from petclick.runtime.preprocess import PreparedCase
from petclick.runtime.tiles import DEFAULT_CACHE_MB, TileCache, TiledLogits, TileGrid, update_logits
from petclick.io.clickfile import Clicks, read_clicks
from petclick.io.clickpolicy import BUDGET
from petclick.io.images import load_volume
from petclick.metrics.lesion import LesionScorer


def _nanmean(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


@torch.no_grad()
def validate(model: torch.nn.Module, dataset: Sequence[Mapping[str, Any]], infer: Mapping[str, Any],
             encoding: Mapping[str, Any] | None, steps: Sequence[int] = (0, 5, 10),
             device: torch.device | str = "cpu") -> dict[str, Any]:
    """Metrics of `model` on the cached validation `dataset` (items from data.val_dataset).

    Returns {"score", "dice", "fpv_ml", "fnv_ml", "per_step": {step: {...}}, "n_cases", "n_positive"}."""
    model.eval()
    device = torch.device(device)
    encoder = ClickEncoder(encoding)
    amp = bool(infer.get("amp")) and device.type == "cuda"
    cache = TileCache(int(float(infer.get("tile_cache_mb") or DEFAULT_CACHE_MB) * 2**20))
    rows: list[dict] = []
    for item in dataset:
        label = load_volume(item["label_file"], dtype=np.float32)
        scorer = LesionScorer(label.array != 0, label.spacing)
        pet_shape = tuple(int(s) for s in item["pet_shape"])
        clicks = read_clicks(item["clicks_file"], shape=pet_shape, policy="strict", budget=BUDGET) \
            if item.get("clicks_file") else Clicks()
        prepared = PreparedCase(item["image"], np.asarray(item["pet_affine"]), pet_shape)
        grid = TileGrid(prepared.image.shape[1:], infer["roi"], infer["overlap"], infer["mode"], device=device)
        tiled = TiledLogits(str(item["case"]), model, grid, sw_batch_size=infer["sw_batch_size"], amp=amp, cache=cache)
        logits, previous = None, None
        for step in steps:
            current = clicks.first(int(step))
            x = encoder(prepared, current, device).float()
            boxes = None if previous is None else encoder.changed_boxes(prepared, previous, current)
            logits = update_logits(tiled, logits, x, boxes)
            previous = current
            prob = torch.sigmoid(logits)[None]
            pet = to_pet_grid(prob, prepared.affine, prepared.pet_affine, prepared.pet_shape)
            m = scorer((pet[0] >= 0.5).cpu().numpy())
            rows.append({"case": item["case"], "step": int(step), "dice": m["dice"], "fpv_ml": m["fpv_ml"],
                         "fnv_ml": m["fnv_ml"]})
        cache.drop(str(item["case"]))
    per_step = {int(s): {k: _nanmean(r[k] for r in rows if r["step"] == s) for k in ("dice", "fpv_ml", "fnv_ml")}
                for s in steps}
    dice = _nanmean(r["dice"] for r in rows)
    n_pos = len({r["case"] for r in rows if not math.isnan(r["dice"])})
    score = dice if n_pos else _nanmean(1.0 / (1.0 + r["fpv_ml"]) for r in rows)
    return {"score": float(score), "dice": dice, "fpv_ml": _nanmean(r["fpv_ml"] for r in rows),
            "fnv_ml": _nanmean(r["fnv_ml"] for r in rows), "per_step": per_step,
            "n_cases": len(dataset), "n_positive": n_pos}
