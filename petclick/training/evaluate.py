"""Validation of a trained bundle (its `scripts/validate.py`): every repeat's best checkpoint on the
fold's validation cases with the official metrics at the configured steps; written to
`<ckpt_path>/validation.yaml` and printed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from petclick.runtime.checkpoint import build_model, find_checkpoints, read_checkpoint
from petclick.runtime.window import infer_config
from petclick.config.bundle import load_bundle_config
from petclick.core.yamlio import write_yaml
from petclick.training.data import fold_files, require_clicks, val_dataset
from petclick.training.distributed import init_distributed
from petclick.training.validation import validate


def _clean(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return None if isinstance(v, float) and math.isnan(v) else v


def run(config_file: str | list | None = None, **override: Any) -> dict[str, Any]:
    """Validate every `model.pt` of the bundle; returns {checkpoint: metrics}."""
    cfg = load_bundle_config(config_file, override)
    device = init_distributed(cfg["training"]["device"]).device
    files = fold_files(cfg["datalist"], cfg["dataroot"], int(cfg["fold"]))
    steps = [int(s) for s in cfg["clicks"]["val_steps"]]
    require_clicks(files.val, steps, cfg["datalist"])
    dataset = val_dataset(cfg, files.val)
    results: dict[str, Any] = {}
    for path in find_checkpoints(Path(cfg["ckpt_path"])):
        ckpt = read_checkpoint(path)
        infer = infer_config(ckpt.get("infer"), ckpt["preprocess"].get("roi"))
        m = validate(build_model(ckpt, device), dataset, infer, ckpt["preprocess"].get("encoding"), steps, device,
                     network=ckpt["network"], score=str(cfg["training"].get("val_score", "dice_fpv")))
        results[str(path)] = _clean(m)
        print(f"{path}: score {m['score']:.4f} dice {m['dice']:.4f} fpv {m['fpv_ml']:.2f} mL fnv {m['fnv_ml']:.2f} mL")
    write_yaml(Path(cfg["ckpt_path"]) / "validation.yaml", results)
    return results


def cli() -> None:
    """Fire entry of a bundle's validate.py."""
    import fire

    fire.Fire({"run": run})
