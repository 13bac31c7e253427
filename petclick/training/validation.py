"""Validation with the challenge's metrics: each validation case at protocol steps (0, 5, 10 by
default) with the first k clicks of its JSON click file, scored on the original PET grid.

The steps of a case share one tiled sliding window (petclick/runtime/tiles.py): a later step
re-runs only the tiles its new clicks reach, with the result of a full pass. Click files follow
the click policy of every command (petclick.io.clickpolicy, strict: a click outside the volume or
over the budget is an error naming the file).

Windowing is inference's: the training ROI grown to the image by `cover_roi` (petclick.networks.roi),
as petclick's predictors do, so the selected checkpoint is scored on the windows it will serve with
(with instance norm the window size changes the output). Labels come from the cached `label_mask`
(training.data.LesionMaskd); a dataset without it reads `label_file`.

Score (what `best_avg_dice_score` holds), YAML `training.val_score`:
- `dice_fpv` (default): the mean over steps and cases of Dice on cases with lesions and of
  1 / (1 + false-positive mL) on lesion-free cases, so a model that paints lesion-free studies loses
  (the challenge ranks false-positive volume too; a large share of autoPET studies are negative);
- `dice`: mean Dice over the steps and the cases with lesions only.
Either is the mean of 1 / (1 + false-positive mL) when no validation case has a lesion.

Under torchrun each rank validates its share of the cases (`validation_rows`) and the rows are
gathered, so every rank computes the same score (`summarize`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

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
def validation_rows(model: torch.nn.Module, dataset: Sequence[Mapping[str, Any]], infer: Mapping[str, Any],
                    encoding: Mapping[str, Any] | None, steps: Sequence[int] = (0, 5, 10),
                    device: torch.device | str = "cpu", network: Mapping[str, Any] | None = None) -> list[dict]:
    """One row {case, step, dice, fpv_ml, fnv_ml} per case and step of `dataset` (items from
    data.val_dataset); windows of `infer.roi` grown by cover_roi for `network` ({name, kwargs}; None:
    the ROI as given)."""
    from petclick.networks.roi import cover_roi

    model.eval()
    device = torch.device(device)
    encoder = ClickEncoder(encoding)
    amp = bool(infer.get("amp")) and device.type == "cuda"
    limit = infer.get("tile_cache_mb") or DEFAULT_CACHE_MB
    cache = TileCache(None if limit == "auto" else int(float(limit) * 2**20))  # auto: one case's tiles at a time
    rows: list[dict] = []
    for item in dataset:
        if item.get("label_mask") is not None:
            mask, spacing = np.asarray(item["label_mask"]) != 0, item["label_spacing"]
        else:
            label = load_volume(item["label_file"], dtype=np.float32)
            mask, spacing = label.array != 0, label.spacing
        scorer = LesionScorer(mask, spacing)
        pet_shape = tuple(int(s) for s in item["pet_shape"])
        clicks = read_clicks(item["clicks_file"], shape=pet_shape, policy="strict", budget=BUDGET) \
            if item.get("clicks_file") else Clicks()
        image = item["image"]
        image = image.float() if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image), dtype=torch.float32)
        prepared = PreparedCase(image, np.asarray(item["pet_affine"]), pet_shape)
        shape = tuple(prepared.image.shape[1:])
        roi = infer["roi"] if network is None else cover_roi(infer["roi"], shape, network["name"],
                                                              **dict(network.get("kwargs") or {}))
        grid = TileGrid(shape, roi, infer["overlap"], infer["mode"], device=device)
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
            rows.append({"case": str(item["case"]), "step": int(step), "dice": m["dice"], "fpv_ml": m["fpv_ml"],
                         "fnv_ml": m["fnv_ml"]})
        cache.drop(str(item["case"]))
    return rows


def summarize(rows: Sequence[Mapping[str, Any]], steps: Sequence[int], score: str = "dice_fpv") -> dict[str, Any]:
    """The validation metrics of `rows` (validation_rows of every rank): score (see the module
    docstring), mean dice / fpv_ml / fnv_ml, per step, case counts."""
    if score not in ("dice_fpv", "dice"):
        raise ValueError(f"training.val_score must be 'dice_fpv' or 'dice', got {score!r}")
    per_step = {int(s): {k: _nanmean(r[k] for r in rows if r["step"] == int(s)) for k in ("dice", "fpv_ml", "fnv_ml")}
                for s in steps}
    dice = _nanmean(r["dice"] for r in rows)
    cases = {r["case"] for r in rows}
    n_pos = len({r["case"] for r in rows if not math.isnan(r["dice"])})
    clean = [1.0 / (1.0 + r["fpv_ml"]) for r in rows if math.isnan(r["dice"])]
    if not n_pos:
        value = _nanmean(1.0 / (1.0 + r["fpv_ml"]) for r in rows)
    elif score == "dice":
        value = dice
    else:
        value = _nanmean([r["dice"] for r in rows if not math.isnan(r["dice"])] + clean)
    return {"score": float(value), "dice": dice, "fpv_ml": _nanmean(r["fpv_ml"] for r in rows),
            "fnv_ml": _nanmean(r["fnv_ml"] for r in rows), "per_step": per_step, "n_cases": len(cases),
            "n_positive": n_pos, "negative_clean": _nanmean(clean)}


def validate(model: torch.nn.Module, dataset: Sequence[Mapping[str, Any]], infer: Mapping[str, Any],
             encoding: Mapping[str, Any] | None, steps: Sequence[int] = (0, 5, 10),
             device: torch.device | str = "cpu", network: Mapping[str, Any] | None = None,
             score: str = "dice_fpv", gather: Callable[[list], list] | None = None) -> dict[str, Any]:
    """Metrics of `model` on the cached validation `dataset` (this rank's share; `gather` joins every
    rank's rows). Returns {"score", "dice", "fpv_ml", "fnv_ml", "per_step": {step: {...}}, "n_cases",
    "n_positive", "negative_clean"}."""
    rows = validation_rows(model, dataset, infer, encoding, steps, device, network)
    if gather is not None:
        rows = gather(rows)
    return summarize(rows, steps, score)
