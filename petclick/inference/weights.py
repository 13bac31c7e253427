"""Per-algorithm ensemble weights (input.yaml `ensemble_weights: {segresnet: 2, dints: 1, swinunetr: 1}`).

Semantics: each algorithm's checkpoints are averaged first (its folds x repeats), then the
algorithms are combined by the weighted mean  sum_a w_a * mean_a / sum_a w_a  (an algorithm
missing from the mapping weighs 1; weight 0 leaves it out).

Two places ensemble (this module holds the weight arithmetic both share):
* petclick's own predictor (`petclick predict/gc/interactive` with a work_dir):
  `petclick.inference.predictor.EnsemblePredictor(..., algo_weights=...)` streams every checkpoint
  into one running sum, each prediction scaled by `bundle_weights` (w_a / n_a). Weights come from
  `--algo-weights`, else the work_dir's `input.yaml` `ensemble_weights`; without any, it keeps the
  plain mean over every checkpoint. Its checkpoints are ordered round-robin over algorithms
  (`interleave_by_algo`), so the time-budget planner's first n checkpoints mix algorithms.
* AutoRunner's ensemble step: MONAI 1.6.1's `AlgoEnsemble.ensemble_pred` is an unweighted
  `MeanEnsemble` over one prediction per bundle, and `EnsembleRunner.set_ensemble_method` accepts
  only `AlgoEnsembleBestN`/`AlgoEnsembleBestByFold` (the latter keeps ONE bundle per fold, the best
  algorithm, so it never combines algorithms). Weights therefore need a custom ensembler:
  `WeightedAlgoEnsemble` (every trained bundle, weighted as above; without weights every algorithm
  weighs 1) run by `run_weighted_ensemble`, i.e. `ensemble: false` in input.yaml, AutoRunner,
  then `petclick ensemble --work-dir work_dir`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import numpy as np

from petclick.core.errors import InputError

log = logging.getLogger(__name__)
T = TypeVar("T")


def check_algo_weights(weights: Mapping[str, Any] | None, source: str = "input.yaml ensemble_weights") -> dict[str, float]:
    """{algorithm: weight >= 0}; None gives {} (equal weights). Where every algorithm present has
    weight 0 the ensembles raise InputError."""
    if weights is None:
        return {}
    if not isinstance(weights, Mapping):
        raise InputError(source, f"must be a mapping {{algorithm: weight}}, got {type(weights).__name__}")
    out: dict[str, float] = {}
    for algo, w in weights.items():
        try:
            value = float(w)
        except (TypeError, ValueError):
            raise InputError(source, f"weight of {algo!r} must be a number, got {w!r}") from None
        if not np.isfinite(value) or value < 0:
            raise InputError(source, f"weight of {algo!r} must be finite and >= 0, got {w!r}")
        out[str(algo)] = value
    return out


def parse_algo_weights(items: Sequence[str] | None, source: str = "--algo-weights") -> dict[str, float] | None:
    """Command-line `ALGO=WEIGHT` items -> {algorithm: weight}, validated; None or none given -> None
    (no override). Errors name `source` (the option)."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        algo, sep, value = str(item).partition("=")
        algo = algo.strip()
        if not sep or not algo or not value.strip():
            raise InputError(source, f"expected ALGO=WEIGHT (e.g. segresnet=2), got {item!r}")
        if algo in out:
            raise InputError(source, f"algorithm {algo!r} given twice")
        out[algo] = value.strip()
    return check_algo_weights(out, source)


def combine(values: Sequence[tuple[float, Any]]) -> Any:
    """Weighted mean of (weight, array/tensor) pairs, weights not all zero."""
    total = sum(w for w, _ in values)
    if total <= 0:
        raise ValueError("combine needs a positive total weight")
    acc = None
    for w, v in values:
        if w:
            acc = v * (w / total) if acc is None else acc + v * (w / total)
    return acc


def algo_of(ckpt: Mapping[str, Any]) -> str:
    """The algorithm (bundle template) a checkpoint dict was trained by: its `algo`, else its network."""
    return str(ckpt.get("algo") or ckpt["network"]["name"])


def checkpoint_algo(path: str | Path) -> str:
    """`algo_of` the checkpoint file at `path` (reads it; EnsemblePredictor uses what it already read)."""
    from petclick.runtime.checkpoint import read_checkpoint

    return algo_of(read_checkpoint(path))


def interleave_by_algo(items: Sequence[T], algos: Sequence[str], weights: Mapping[str, float] | None = None) -> list[T]:
    """`items` round-robin over their algorithms (heaviest weight first, ties in order of first
    appearance; each algorithm's items keep their order), so that every prefix mixes algorithms:
    the time-budget planner keeps the first n checkpoints."""
    groups: dict[str, list[T]] = {}
    for item, algo in zip(items, algos, strict=True):
        groups.setdefault(algo, []).append(item)
    w = weights or {}
    queues = [groups[a] for a in sorted(groups, key=lambda a: -w.get(a, 1.0))]  # stable sort
    depth = max((len(q) for q in queues), default=0)
    return [q[i] for i in range(depth) for q in queues if i < len(q)]


def bundle_weights(algos: Sequence[str], weights: Mapping[str, float]) -> list[float]:
    """Per-member weights w_a / n_a (n_a: members of algorithm a), so each algorithm's members
    share its weight; absent algorithms weigh 1."""
    counts: dict[str, int] = {}
    for a in algos:
        counts[a] = counts.get(a, 0) + 1
    return [float(weights.get(a, 1.0)) / counts[a] for a in algos]
