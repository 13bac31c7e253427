"""AutoRunner's ensemble step weighted per algorithm (`petclick ensemble`): MONAI 1.6.1's
AlgoEnsemble is an unweighted mean over one prediction per bundle and BestByFold keeps one bundle
per fold, so weights need the custom ensembler here. The weight arithmetic is
petclick.inference.weights (shared with petclick's own EnsemblePredictor)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from petclick.core.errors import InputError
from petclick.core.yamlio import read_yaml
from petclick.inference.weights import bundle_weights, check_algo_weights, combine

log = logging.getLogger(__name__)


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
