"""The prediction loop: per case and step, the (streamed) ensemble, post-processing and the files.

Outputs in `out/` on the PET grid (PET affine):
- `<case>.nii.gz` (every click of the file) or `<case>_pred<k>.nii.gz` (step k: the first k
  clicks of each kind; the layout `petclick evaluate` reads), uint8 masks after post-processing;
- with `save_prob`, `<case>_prob.nii.gz` / `<case>_prob<k>.nii.gz`: the ensemble's float32
  probability before post-processing;
- `predict.json`: the plan (checkpoints, TTA axes, measured seconds per pass), the per-algorithm
  ensemble weights used (`algo_weights`, also inside the plan; null = plain mean), tracer per case
  and seconds per case. It is merged per case under a file lock (petclick.io.runrecord), so runs
  into one folder keep each other's cases, and each case names the run (`runs`: its settings:
  checkpoints, TTA, post-processing, click policy) that wrote its files.
Every file is written atomically (a kill leaves no partial file under a final name).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from petclick.core.errors import InputError
import petclick
from petclick.io.clickfile import Clicks, read_clicks
from petclick.io.clickpolicy import ClickPolicy
from petclick.io.images import CaseVolumes, save_volume
from petclick.io.runrecord import check_record, merge_cases, new_run_id
from petclick.postprocess import make_config, postprocess, resolve_tracer
from petclick.workflows.predict.budget import DEFAULT_AXES, Plan, measure_pass, plan_budget
from petclick.workflows.predict.cases import CaseSpec
from petclick.workflows.predict.inputs import load_prediction_case

log = logging.getLogger(__name__)
ALL_STEPS = tuple(range(11))


def load_predictor(models: Sequence[str | Path], device: str = "cpu", algo_weights: Mapping[str, float] | None = None):
    """A built-in predictor by name ("suv-threshold") or the streamed ensemble of every checkpoint under
    the paths, weighted per algorithm by `algo_weights` (None: a work_dir's input.yaml `ensemble_weights`)."""
    from petclick.inference.predictors import BUILTIN
    models = [str(m) for m in models]
    if len(models) == 1 and models[0] in BUILTIN:
        if algo_weights is not None:
            log.warning("--algo-weights ignored: %s is not an ensemble", models[0])
        return BUILTIN[models[0]]()
    for m in models:
        if not Path(m).exists():
            raise InputError(m, f"model folder or checkpoint not found (built-in predictors: {', '.join(BUILTIN)})")
    try:
        from petclick.inference.predictor import load_model_predictor
    except ImportError as exc:  # the inference part is not installed in this build
        raise InputError(models[0], f"cannot load trained models: petclick.inference is unavailable ({exc})") from exc
    return load_model_predictor([Path(m) for m in models], device=device, algo_weights=algo_weights)


def supports_subsets(predictor) -> bool:
    """True for ensembles that can run a subset of checkpoints with chosen TTA axes."""
    return hasattr(predictor, "predict_with") and hasattr(predictor, "checkpoints")


@dataclass
class PredictSettings:
    """What to predict and how: steps (None = every click), post-processing, budget, outputs."""

    steps: tuple[int, ...] | None = None
    postprocess: dict = field(default_factory=make_config)
    save_prob: bool = False
    time_budget_s: float | None = None
    tta_axes: tuple[int, ...] = ()
    budget_axes: tuple[int, ...] = DEFAULT_AXES
    progress: bool = True
    click_policy: ClickPolicy | str = ClickPolicy.STRICT


class Runner:
    """Runs one predictor over cases; plans the time budget on the first case's first step."""

    def __init__(self, predictor, settings: PredictSettings, clock=time.perf_counter):
        self.predictor = predictor
        self.clock = clock
        self.settings = settings
        self.plan: Plan | None = None
        self.seconds_per_pass: float | None = None
        if settings.time_budget_s is not None and not supports_subsets(predictor):
            log.warning("--time-budget ignored: predictor %s has no checkpoints to choose from",
                        getattr(predictor, "name", predictor))
        if settings.tta_axes and not supports_subsets(predictor):
            raise InputError(None, f"TTA axes need a trained ensemble; {getattr(predictor, 'name', predictor)} has none")

    def _n_predictions(self) -> int:
        return 1 if self.settings.steps is None else len(self.settings.steps)

    def _planned(self, case: CaseVolumes, clicks: Clicks) -> np.ndarray | None:
        """Measure one pass of the first checkpoint and choose the plan; returns that pass's probability."""
        ckpts = list(self.predictor.checkpoints)
        seconds, prob = measure_pass(lambda: self.predictor.predict_with(ckpts[:1], (), case, clicks), self.clock)
        self.seconds_per_pass = seconds
        self.plan = plan_budget(seconds, float(self.settings.time_budget_s), len(ckpts), self._n_predictions(),
                                self.settings.budget_axes)
        msg = (f"time budget {self.settings.time_budget_s:g} s per case: {seconds:.2f} s per pass -> "
               f"{self.plan.n_models}/{len(ckpts)} checkpoint(s), mirror axes {list(self.plan.tta_axes)} "
               f"(estimated {self.plan.estimated_s:.1f} s)")
        (log.info if self.plan.fits else log.warning)(msg + ("" if self.plan.fits else ": does not fit, using the minimum"))
        return prob if (self.plan.n_models, self.plan.tta_axes) == (1, ()) else None

    def probability(self, case: CaseVolumes, clicks: Clicks) -> np.ndarray:
        s, p = self.settings, self.predictor
        if s.time_budget_s is not None and supports_subsets(p):
            if self.plan is None:
                prob = self._planned(case, clicks)
                if prob is not None:
                    return np.asarray(prob, np.float32)
            return np.asarray(p.predict_with(list(p.checkpoints)[: self.plan.n_models], self.plan.tta_axes, case, clicks),
                              np.float32)
        if s.tta_axes:
            return np.asarray(p.predict_with(list(p.checkpoints), tuple(s.tta_axes), case, clicks), np.float32)
        return np.asarray(p.predict(case, clicks), np.float32)

    def run_case(self, spec: CaseSpec, out: Path, bar=None) -> dict:
        """Predict every requested step of one case and write its files; returns its summary row."""
        t0 = time.perf_counter()
        case = load_prediction_case(spec.ct, spec.pet)
        clicks = read_clicks(spec.clicks, case.shape, policy=self.settings.click_policy) if spec.clicks else Clicks()
        tracer = resolve_tracer(spec.tracer, case)
        steps = [None] if self.settings.steps is None else list(self.settings.steps)
        written, prev_key, prob = [], None, None
        for step in steps:
            current = clicks if step is None else clicks.first(step)
            key = (tuple(current.tumor), tuple(current.background))
            if key != prev_key:           # fewer clicks than k: the previous step's probability holds
                prob = self.probability(case, current)
                if prob.shape != case.shape:
                    raise InputError(spec.pet, f"prediction shape {prob.shape} differs from the PET grid {case.shape}")
            prev_key = key
            mask = postprocess(prob, case, current, tracer, self.settings.postprocess)
            suffix = "" if step is None else f"_pred{step}"
            written.append(str(save_volume(out / f"{spec.case_id}{suffix}.nii.gz", mask.astype(np.uint8), case.affine)))
            if self.settings.save_prob:
                psuffix = "_prob" if step is None else f"_prob{step}"
                save_volume(out / f"{spec.case_id}{psuffix}.nii.gz", prob.astype(np.float32), case.affine)
            if bar is not None:
                bar.update(1)
        return {"case": spec.case_id, "tracer": tracer, "n_tumor_clicks": len(clicks.tumor),
                "n_background_clicks": len(clicks.background), "steps": steps, "files": written,
                "seconds": round(time.perf_counter() - t0, 3)}

    def run_settings(self) -> dict:
        """What produced this run's files: predictor, checkpoints, plan, TTA, post-processing, clicks."""
        weights = getattr(self.predictor, "algo_weights", None)
        ckpts = [str(c) for c in (getattr(self.predictor, "checkpoints", []) or [])]
        s = self.settings
        return {"predictor": getattr(self.predictor, "name", type(self.predictor).__name__),
                "n_checkpoints": len(ckpts), "checkpoints": ckpts, "algo_weights": weights,
                "plan": None if self.plan is None else {**asdict(self.plan), "algo_weights": weights},
                "seconds_per_pass": self.seconds_per_pass, "tta_axes": list(s.tta_axes),
                "time_budget_s": s.time_budget_s, "postprocess": s.postprocess,
                "click_policy": ClickPolicy.parse(s.click_policy).value,
                "steps": None if s.steps is None else list(s.steps), "save_prob": s.save_prob,
                "petclick_version": petclick.__version__}

    def run(self, cases: Sequence[CaseSpec], out: str | Path) -> dict:
        """Predict every case into `out`, merging each case into predict.json as it is written;
        returns this run's summary (its settings and its cases)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        record, run_id = out / "predict.json", new_run_id()
        check_record(record)
        n_steps = 1 if self.settings.steps is None else len(self.settings.steps)
        rows = []
        with tqdm(total=len(cases) * n_steps, desc="predict", unit="step", disable=not self.settings.progress) as bar:
            for spec in cases:
                bar.set_postfix_str(spec.case_id)
                rows.append(self.run_case(spec, out, bar))
                merge_cases(record, run_id, self.run_settings(), rows[-1:])
        return {**self.run_settings(), "run": run_id, "cases": rows}
