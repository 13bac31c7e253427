"""The post-processing pipeline: threshold the ensemble's probability, then apply the enabled rules.

The rules are the entries of the RULE_REGISTRY below, applied in registration order (each rule sees
the previous one's output):
1. `fn_recovery`     add hot, missed components of `prob >= low`             (recovery.py)
2. `min_volume`      remove components under `min_ml` mL                       (small.py)
3. `suv_filter`      remove components with SUVmax under the tracer's level   (suv_filter.py)
4. `merge`           join components closer than `distance_mm`                 (merge.py)
5. `click_consistency` tumour clicks inside, background clicks outside         (clicks.py)
Rules 2 and 3 never remove a component that holds a tumour click; rule 5 runs last so that its
guarantee holds for the final mask. A new rule: its module, plus one `RULE_REGISTRY.register`
entry here at its place in the order (its settings and defaults become YAML keys).

Configuration: a nested dict (or a YAML file of the same shape) merged over DEFAULT_CONFIG;
`{"suv_filter": {"enabled": true}}` switches one rule on. Defaults: only click consistency is on
(it is the reader's guarantee, not a heuristic); the others are off until measured to help on
held-out phantoms with benchmarks/bench_postprocess.py (docs/prediction.md, "Post-processing").
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from petclick.core.errors import InputError
from petclick.core.registry import Registry
from petclick.core.yamlio import read_yaml
from petclick.io.clickfile import Clicks
from petclick.io.images import CaseVolumes
from petclick.postprocess.clicks import enforce_clicks
from petclick.postprocess.merge import merge_close_components
from petclick.postprocess.recovery import recover_false_negatives
from petclick.postprocess.small import remove_small_components
from petclick.postprocess.suv_filter import TRACER_SUV_MIN, suv_filter
from petclick.postprocess.tracer import classify_tracer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleInput:
    """What a rule may read besides the current mask: the probability, the PET (SUV) and its
    spacing, the reader's clicks and the case's tracer."""

    prob: np.ndarray
    pet: np.ndarray
    spacing: tuple[float, float, float]
    clicks: Clicks
    tracer: str


@dataclass(frozen=True)
class PostprocessRule:
    """One rule: its settings' defaults (`enabled` included) and `apply(mask, RuleInput, settings) -> mask`;
    `needs_tracer`: the case's tracer is classified when not given."""

    defaults: Mapping[str, Any]
    apply: Callable[[np.ndarray, RuleInput, Mapping[str, Any]], np.ndarray]
    needs_tracer: bool = False


def _per_tracer(value, tracer: str) -> float:
    return float(value[tracer] if isinstance(value, dict) else value)


#: The post-processing rules, in the order they are applied.
RULE_REGISTRY: Registry[PostprocessRule] = Registry("post-processing rule")
RULE_REGISTRY.register("fn_recovery", PostprocessRule(
    {"enabled": False, "low": 0.2, "suv_min": {"fdg": 3.0, "psma": 3.0}},
    lambda mask, x, c: recover_false_negatives(mask, x.prob, x.pet, c["low"], _per_tracer(c["suv_min"], x.tracer),
                                               x.clicks.background), needs_tracer=True))
RULE_REGISTRY.register("min_volume", PostprocessRule(
    {"enabled": False, "min_ml": 0.5},
    lambda mask, x, c: remove_small_components(mask, x.spacing, c["min_ml"], protect=x.clicks.tumor)))
RULE_REGISTRY.register("suv_filter", PostprocessRule(
    {"enabled": False, "suv_min": dict(TRACER_SUV_MIN)},
    lambda mask, x, c: suv_filter(mask, x.pet, _per_tracer(c["suv_min"], x.tracer), protect=x.clicks.tumor),
    needs_tracer=True))
RULE_REGISTRY.register("merge", PostprocessRule(
    {"enabled": False, "distance_mm": 5.0},
    lambda mask, x, c: merge_close_components(mask, x.spacing, c["distance_mm"])))
RULE_REGISTRY.register("click_consistency", PostprocessRule(
    {"enabled": True, "low": 0.2, "max_radius_mm": 40.0, "min_radius_mm": 0.0, "suv_fraction": 0.41,
     "peak_radius_mm": 5.0,
     # suv-replace: a clicked lesion is delineated by its SUV iso-contour inside the click's ball, the
     # model's findings elsewhere kept (chosen on the demo cohort's fold-0 validation cases and the
     # seed-1234 cohort, 28 cases, benchmarks/bench_quality.py --rescore: ensemble Dice AUC 6.42
     # against 5.94 with always-suv, which had replaced `missed`: 6.06 against 4.81)
     "grow": "suv-replace"},
    lambda mask, x, c: enforce_clicks(mask, x.clicks, x.pet, x.spacing, prob=x.prob, low=c["low"],
                                      max_radius_mm=c["max_radius_mm"], min_radius_mm=c["min_radius_mm"],
                                      suv_fraction=c["suv_fraction"], peak_radius_mm=c["peak_radius_mm"],
                                      grow=c.get("grow", "missed"))))

#: Rule names in application order.
RULES = RULE_REGISTRY.names()
DEFAULT_CONFIG: dict = {"threshold": 0.5, **{name: copy.deepcopy(dict(rule.defaults)) for name, rule in RULE_REGISTRY.items()}}


def _merge(base: dict, override: dict, where: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise InputError(None, f"unknown post-processing setting {where}{key!r}; known: {sorted(base)}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            out[key] = _merge(base[key], value, f"{where}{key}.")
        elif isinstance(base[key], dict) and key in RULE_REGISTRY and isinstance(value, bool):
            out[key]["enabled"] = value          # {"merge": true} is short for {"merge": {"enabled": true}}
        else:
            out[key] = value
    return out


def make_config(config: dict | str | Path | None = None, **enable: bool) -> dict:
    """Full configuration: DEFAULT_CONFIG, overridden by a dict or YAML file, then by `rule=True/False` flags."""
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if isinstance(config, (str, Path)):
        path = Path(config)
        loaded = read_yaml(path)
        try:
            cfg = _merge(cfg, loaded.get("postprocess", loaded))
        except InputError as exc:
            raise InputError(path, exc.problem) from exc
    elif config is not None:
        cfg = _merge(cfg, config)
    for rule, on in enable.items():
        RULE_REGISTRY.canonical(rule)
        if on is not None:
            cfg[rule]["enabled"] = bool(on)
    return cfg


def describe_config(config: Mapping[str, Any] | None) -> str:
    """One line naming how masks are made, for report headers: `prob >= 0.5, no post-processing`
    (None, or every rule off), else the threshold and each enabled rule with the settings that differ
    from its defaults (`click_consistency` shows its `grow` mode always)."""
    if config is None:
        return f"prob >= {DEFAULT_CONFIG['threshold']:g}, no post-processing"
    cfg = make_config(dict(config))
    parts = []
    for name, rule in RULE_REGISTRY.items():
        settings = cfg[name]
        if not settings.get("enabled"):
            continue
        changed = {k: v for k, v in settings.items() if k != "enabled" and v != rule.defaults.get(k)}
        if name == "click_consistency":
            changed = {"grow": settings.get("grow", "missed"), **changed}
        parts.append(name + (" (" + ", ".join(f"{k} {v}" for k, v in changed.items()) + ")" if changed else ""))
    rules = ", ".join(parts) if parts else "no post-processing"
    return f"prob >= {cfg['threshold']:g}, {rules}"


def resolve_tracer(tracer: str | None, case: CaseVolumes, classifier: Any = None) -> str:
    """The case's tracer: the given one ("fdg"/"psma"), else the learned `classifier`'s answer when
    one is given (petclick.runtime.tracer_model: anything with `classify(pet, affine)` ->
    TracerGuess), else the MIP rule's (classify_tracer)."""
    if tracer in ("fdg", "psma"):
        return tracer
    guess = (classifier.classify if classifier is not None else classify_tracer)(case.pet.array, case.affine)
    log.info("tracer not given: classified as %s (%s)", guess.tracer.upper(), guess.reason)
    return guess.tracer


def postprocess(prob_or_mask: np.ndarray, case: CaseVolumes, clicks: Clicks | None = None, tracer: str | None = None,
                config: dict | None = None) -> np.ndarray:
    """Binary mask (bool, PET grid) from the ensemble's probability (or a mask) after the enabled rules."""
    cfg = make_config(config)
    prob = np.asarray(prob_or_mask, np.float32)
    if prob.shape != case.shape:
        raise InputError(case.pet.path, f"prediction shape {prob.shape} differs from the PET grid {case.shape}")
    mask = prob >= float(cfg["threshold"])
    enabled = [(name, rule) for name, rule in RULE_REGISTRY.items() if cfg[name]["enabled"]]
    needs_tracer = any(rule.needs_tracer for _, rule in enabled)
    tr = resolve_tracer(tracer, case) if needs_tracer else (tracer or "unknown")
    given = RuleInput(prob=prob, pet=case.pet.array, spacing=case.pet.spacing, clicks=clicks or Clicks(), tracer=tr)
    for name, rule in enabled:
        mask = rule.apply(mask, given, cfg[name])
    return mask
