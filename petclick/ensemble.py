"""Per-algorithm ensemble weights (input.yaml `ensemble_weights: {segresnet: 2, dints: 1, swinunetr: 1}`).

Semantics: each algorithm's checkpoints are averaged first (its folds x repeats), then the
algorithms are combined by the weighted mean  sum_a w_a * mean_a / sum_a w_a  (an algorithm
missing from the mapping weighs 1; weight 0 leaves it out). Without weights every algorithm
weighs the same.

Two places ensemble:
* petclick's own predictor (`petclick predict/evaluate/interactive` with a work_dir):
  `WeightedEnsemblePredictor` composes one streamed `EnsemblePredictor` per algorithm.
* AutoRunner's ensemble step: MONAI 1.6.1's `AlgoEnsemble.ensemble_pred` is an unweighted
  `MeanEnsemble` over one prediction per bundle, and `EnsembleRunner.set_ensemble_method` accepts
  only `AlgoEnsembleBestN`/`AlgoEnsembleBestByFold` (the latter keeps ONE bundle per fold, the best
  algorithm, so it never combines algorithms). Weights therefore need a custom ensembler:
  `WeightedAlgoEnsemble` (every trained bundle, weighted as above) run by `run_weighted_ensemble`,
  i.e. `ensemble: false` in input.yaml, AutoRunner, then `petclick ensemble --work-dir work_dir`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from petclick.errors import InputError

log = logging.getLogger(__name__)


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


def checkpoint_algo(path: str | Path) -> str:
    """The algorithm (bundle template) a checkpoint was trained by: its `algo`, else its network."""
    from petclick.inference.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    return str(ckpt.get("algo") or ckpt["network"]["name"])


def bundle_weights(algos: Sequence[str], weights: Mapping[str, float]) -> list[float]:
    """Per-member weights w_a / n_a (n_a: members of algorithm a), so each algorithm's members
    share its weight; absent algorithms weigh 1."""
    counts: dict[str, int] = {}
    for a in algos:
        counts[a] = counts.get(a, 0) + 1
    return [float(weights.get(a, 1.0)) / counts[a] for a in algos]


class WeightedEnsemblePredictor:
    """Predictor protocol: the weighted mean of per-algorithm EnsemblePredictors (see module docstring)."""

    def __init__(self, checkpoints: Sequence[str | Path], algo_weights: Mapping[str, Any] | None = None,
                 name: str | None = None, **kwargs: Any):
        from petclick.inference.predictor import EnsemblePredictor

        self.weights = check_algo_weights(algo_weights)
        groups: dict[str, list[Path]] = {}
        for c in checkpoints:
            groups.setdefault(checkpoint_algo(c), []).append(Path(c))
        kept = {a: p for a, p in groups.items() if self.weights.get(a, 1.0) > 0}
        if not kept:
            raise InputError("ensemble_weights", f"every algorithm present ({sorted(groups)}) has weight 0")
        self.members = {a: EnsemblePredictor(p, **kwargs) for a, p in sorted(kept.items())}
        self.checkpoints = [c for p in self.members.values() for c in p.checkpoints]
        self.name = name or "weighted-" + "-".join(f"{a}{self.weights.get(a, 1.0):g}" for a in self.members)

    def predict(self, case, clicks) -> np.ndarray:
        parts = [(self.weights.get(a, 1.0), p.predict(case, clicks)) for a, p in self.members.items()]
        return np.asarray(combine(parts), dtype=np.float32)


def _algo_ensemble_class():
    from monai.apps.auto3dseg.ensemble_builder import AlgoEnsembleBestN

    class WeightedAlgoEnsemble(AlgoEnsembleBestN):
        """Every trained bundle (n_best = all by default); mean mode weighs each bundle's prediction
        by its algorithm's weight shared among that algorithm's bundles."""

        def __init__(self, weights: Mapping[str, float], n_best: int = 10**6):
            super().__init__(n_best=n_best)
            self.weights = dict(weights)

        def collect_algos(self, n_best: int = -1) -> None:
            super().collect_algos(n_best)
            kept = [a for a in self.algo_ensemble if self.weights.get(_algo_name(a), 1.0) > 0]
            if not kept:
                raise InputError("ensemble_weights", f"every trained algorithm has weight 0: {self.weights}")
            self.algo_ensemble = kept

        def ensemble_pred(self, preds, sigmoid=False):
            if self.mode != "mean":
                return super().ensemble_pred(preds, sigmoid=sigmoid)
            from monai.utils.misc import prob2class

            if any(not p.is_cuda for p in preds):
                preds = [p.cpu() for p in preds]
            w = bundle_weights([_algo_name(a) for a in self.algo_ensemble], self.weights)
            prob = combine(list(zip(w, preds)))
            return prob2class(torch.as_tensor(prob), dim=0, keepdim=True, sigmoid=sigmoid)

    return WeightedAlgoEnsemble


def _algo_name(entry: Mapping[str, Any]) -> str:
    from monai.apps.auto3dseg.utils import get_name_from_algo_id
    from monai.utils.enums import AlgoKeys

    return get_name_from_algo_id(entry[AlgoKeys.ID])


def run_weighted_ensemble(work_dir: str | Path, weights: Mapping[str, Any] | None = None, **kwargs: Any) -> Path:
    """AutoRunner's ensemble step over every trained bundle in `work_dir`, weighted per algorithm
    (`weights`, else `ensemble_weights` of `<work_dir>/input.yaml`); one process. `kwargs` go to
    MONAI's EnsembleRunner (e.g. output_dir, sigmoid; default: input.yaml's sigmoid). Returns the
    output folder."""
    from monai.apps.auto3dseg import EnsembleRunner

    from petclick.training.config import read_yaml

    work_dir = Path(work_dir).resolve()
    cfg_path = work_dir / "input.yaml"
    user = read_yaml(cfg_path)
    w = check_algo_weights(weights if weights is not None else user.get("ensemble_weights"),
                           "weights" if weights is not None else f"{cfg_path} ensemble_weights")
    kwargs.setdefault("sigmoid", bool(user.get("sigmoid", True)))
    ensemble_class = _algo_ensemble_class()

    class WeightedEnsembleRunner(EnsembleRunner):
        def set_ensemble_method(self, ensemble_method_name: str = "AlgoEnsembleBestN", **kw: Any) -> None:
            self.ensemble_method_name = "WeightedAlgoEnsemble"
            self.ensemble_method = ensemble_class(w, n_best=int(kw.pop("n_best", 10**6)))

    runner = WeightedEnsembleRunner(str(cfg_path), work_dir=str(work_dir), num_fold=int(user.get("num_fold", 5)),
                                    mgpu=False, **kwargs)
    runner.ensemble()
    out = Path(kwargs.get("output_dir") or work_dir / "ensemble_output")
    log.info("weighted ensemble %s -> %s", w or "equal", out)
    return out
