"""The post-processing pipeline: threshold the ensemble's probability, then apply the enabled rules.

Order (each rule sees the previous one's output):
1. `fn_recovery`     add hot, missed components of `prob >= low`             (recovery.py)
2. `min_volume`      remove components under `min_ml` mL                       (small.py)
3. `suv_filter`      remove components with SUVmax under the tracer's level   (suv_filter.py)
4. `merge`           join components closer than `distance_mm`                 (merge.py)
5. `click_consistency` tumour clicks inside, background clicks outside         (clicks.py)
Rules 2 and 3 never remove a component that holds a tumour click; rule 5 runs last so that its
guarantee holds for the final mask.

Configuration: a nested dict (or a YAML file of the same shape) merged over DEFAULT_CONFIG;
`{"suv_filter": {"enabled": true}}` switches one rule on. Defaults: only click consistency is on
(it is the reader's guarantee, not a heuristic); the others are off until measured to help on
held-out phantoms with benchmarks/bench_postprocess.py (see the README "Post-processing").
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np

from petclick.core.errors import InputError
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes
from petclick.postprocess.clicks import enforce_clicks
from petclick.postprocess.merge import merge_close_components
from petclick.postprocess.recovery import recover_false_negatives
from petclick.postprocess.small import remove_small_components
from petclick.postprocess.suv_filter import TRACER_SUV_MIN, suv_filter
from petclick.postprocess.tracer import classify_tracer

log = logging.getLogger(__name__)

RULES = ("fn_recovery", "min_volume", "suv_filter", "merge", "click_consistency")
DEFAULT_CONFIG: dict = {
    "threshold": 0.5,
    "fn_recovery": {"enabled": False, "low": 0.2, "suv_min": {"fdg": 3.0, "psma": 3.0}},
    "min_volume": {"enabled": False, "min_ml": 0.5},
    "suv_filter": {"enabled": False, "suv_min": dict(TRACER_SUV_MIN)},
    "merge": {"enabled": False, "distance_mm": 5.0},
    "click_consistency": {"enabled": True, "low": 0.2, "max_radius_mm": 40.0, "min_radius_mm": 0.0,
                          "suv_fraction": 0.41, "peak_radius_mm": 5.0},
}


def _merge(base: dict, override: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise InputError(None, f"unknown post-processing setting {where}{key!r}; known: {sorted(base)}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, f"{where}{key}.")
        elif isinstance(base[key], dict) and key in RULES and isinstance(value, bool):
            out[key]["enabled"] = value          # {"merge": true} is short for {"merge": {"enabled": true}}
        else:
            out[key] = value
    return out


def make_config(config: dict | str | Path | None = None, **enable: bool) -> dict:
    """Full configuration: DEFAULT_CONFIG, overridden by a dict or YAML file, then by `rule=True/False` flags."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.is_file():
            raise InputError(path, "post-processing config file not found")
        import yaml
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(path, f"malformed YAML ({exc})") from exc
        if not isinstance(loaded, dict):
            raise InputError(path, "post-processing config must be a mapping of rule names to settings")
        try:
            cfg = _merge(cfg, loaded.get("postprocess", loaded))
        except InputError as exc:
            raise InputError(path, exc.problem) from exc
    elif config is not None:
        cfg = _merge(cfg, config)
    for rule, on in enable.items():
        if rule not in RULES:
            raise InputError(None, f"unknown post-processing rule {rule!r}; known: {RULES}")
        if on is not None:
            cfg[rule]["enabled"] = bool(on)
    return cfg


def _per_tracer(value, tracer: str) -> float:
    return float(value[tracer] if isinstance(value, dict) else value)


def resolve_tracer(tracer: str | None, case: CaseVolumes) -> str:
    """The case's tracer: the given one ("fdg"/"psma"), else the MIP classifier's guess."""
    if tracer in ("fdg", "psma"):
        return tracer
    guess = classify_tracer(case.pet.array, case.affine)
    log.info("tracer not given: classified as %s (%s)", guess.tracer.upper(), guess.reason)
    return guess.tracer


def postprocess(prob_or_mask: np.ndarray, case: CaseVolumes, clicks: Clicks | None = None, tracer: str | None = None,
                config: dict | None = None) -> np.ndarray:
    """Binary mask (bool, PET grid) from the ensemble's probability (or a mask) after the enabled rules."""
    cfg = make_config(config)
    prob = np.asarray(prob_or_mask, np.float32)
    if prob.shape != case.shape:
        raise InputError(case.pet.path, f"prediction shape {prob.shape} differs from the PET grid {case.shape}")
    clicks = clicks or Clicks()
    pet, spacing = case.pet.array, case.pet.spacing
    mask = prob >= float(cfg["threshold"])
    needs_tracer = cfg["fn_recovery"]["enabled"] or cfg["suv_filter"]["enabled"]
    tr = resolve_tracer(tracer, case) if needs_tracer else (tracer or "unknown")
    if cfg["fn_recovery"]["enabled"]:
        c = cfg["fn_recovery"]
        mask = recover_false_negatives(mask, prob, pet, c["low"], _per_tracer(c["suv_min"], tr), clicks.background)
    if cfg["min_volume"]["enabled"]:
        mask = remove_small_components(mask, spacing, cfg["min_volume"]["min_ml"], protect=clicks.tumor)
    if cfg["suv_filter"]["enabled"]:
        mask = suv_filter(mask, pet, _per_tracer(cfg["suv_filter"]["suv_min"], tr), protect=clicks.tumor)
    if cfg["merge"]["enabled"]:
        mask = merge_close_components(mask, spacing, cfg["merge"]["distance_mm"])
    if cfg["click_consistency"]["enabled"]:
        c = cfg["click_consistency"]
        mask = enforce_clicks(mask, clicks, pet, spacing, prob=prob, low=c["low"], max_radius_mm=c["max_radius_mm"],
                              min_radius_mm=c["min_radius_mm"], suv_fraction=c["suv_fraction"],
                              peak_radius_mm=c["peak_radius_mm"])
    return mask
