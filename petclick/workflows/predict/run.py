"""The prediction loop: per case and step, the (streamed) ensemble, post-processing and the files.

Outputs in `out/` on the PET grid (PET affine):
- `<case>.nii.gz` (every click of the file) or `<case>_pred<k>.nii.gz` (step k: the first k
  clicks of each kind; the layout `petclick evaluate` reads), uint8 masks after post-processing;
- with `save_prob`, `<case>_prob.nii.gz` / `<case>_prob<k>.nii.gz`: the ensemble's float32
  probability before post-processing;
- with `dicom_seg` (cases read from DICOM), `<case>[_pred<k>].seg.dcm`: the mask as a DICOM SEG
  on the PET series (petclick.io.dicom_seg);
- `predict.json`: the plan (checkpoints, TTA axes, measured seconds per pass), the per-algorithm
  ensemble weights used (`algo_weights`, also inside the plan; null = plain mean), tracer per case
  and seconds per case. It is merged per case under a file lock (petclick.io.runrecord), so runs
  into one folder keep each other's cases, and each case names the run (`runs`: its settings:
  checkpoints, TTA, post-processing, click policy, incremental mode, ranks) that wrote its files,
  and its session counters (tiles computed and reused).
Every file is written atomically (a kill leaves no partial file under a final name).

Each case runs on one petclick.inference.session.InteractiveSession through the one step loop
(petclick.inference.steps.run_steps): with several steps a trained ensemble re-runs only the tiles
a step's clicks change (mode `exact`, the default for several steps; `naive` for one step).
Under torchrun each rank predicts its share of the cases (petclick/workflows/shards.py) and merges
them into predict.json under one run id, so the record equals a one-process run's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

import petclick
from petclick.core.errors import InputError
from petclick.inference.routing import StepRoutedPredictor
from petclick.inference.session import InteractiveSession
from petclick.inference.steps import official_clicks, run_steps
from petclick.io.clickfile import Clicks, read_clicks
from petclick.io.clickpolicy import BUDGET, ClickPolicy
from petclick.io.dicom_seg import write_seg
from petclick.io.dicom_study import load_dicom_case
from petclick.io.images import CaseVolumes, save_volume
from petclick.io.runrecord import check_record, merge_cases, new_run_id
from petclick.postprocess import make_config, resolve_tracer
from petclick.workflows.predict.budget import DEFAULT_AXES, Plan, plan_budget
from petclick.workflows.predict.cases import CaseSpec
from petclick.workflows.predict.inputs import load_prediction_case
from petclick.workflows.shards import Shards

log = logging.getLogger(__name__)
ALL_STEPS = tuple(range(11))


def supports_subsets(predictor) -> bool:
    """True for ensembles that can run a subset of checkpoints with chosen TTA axes."""
    return hasattr(predictor, "predict_with") and hasattr(predictor, "checkpoints")


@dataclass
class PredictSettings:
    """What to predict and how: steps (None = every click), post-processing, budget, outputs, the
    click policy, the incremental mode (None: exact for several steps, naive for one) and the
    tile-cache limit (None: the checkpoints' `infer.tile_cache_mb`, else the default); `tracer_model`:
    a learned tracer classifier's checkpoint, used where a case's tracer is unknown (None: the MIP rule)."""

    steps: tuple[int, ...] | None = None
    postprocess: dict = field(default_factory=make_config)
    save_prob: bool = False
    time_budget_s: float | None = None
    tta_axes: tuple[int, ...] = ()
    budget_axes: tuple[int, ...] = DEFAULT_AXES
    progress: bool = True
    click_policy: ClickPolicy | str = ClickPolicy.STRICT
    incremental: str | None = None
    tile_cache_mb: float | None = None
    tracer_model: str | None = None
    dicom_seg: bool = False         # also a DICOM SEG per mask (DICOM cases: referencing the PET series)
    budget: int | None = BUDGET     # clicks of each kind (None: any number, as autoPET V scribble voxels)
    stateful: bool = False          # sessions live on across runs (gc autopet-v): the incremental mode as for several steps


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
        self.tracer_classifier = None
        if settings.tracer_model is not None:
            from petclick.runtime.tracer_model import TracerClassifier

            self.tracer_classifier = TracerClassifier.load(settings.tracer_model)
        if settings.tta_axes and not supports_subsets(predictor):
            raise InputError(None, f"TTA axes need a trained ensemble; {getattr(predictor, 'name', predictor)} has none")

    def case_tracer(self, tracer: str | None, case: CaseVolumes) -> str:
        """The case's tracer: the given one, else the learned classifier's (--tracer-model), else the MIP rule's."""
        return resolve_tracer(tracer, case, self.tracer_classifier)

    def _n_predictions(self) -> int:
        return 1 if self.settings.steps is None else len(self.settings.steps)

    @property
    def mode(self) -> str | None:
        """The incremental mode asked for (None: exact for several steps, naive for one)."""
        s = self.settings
        if s.incremental is not None:
            return s.incremental
        return "naive" if self._n_predictions() == 1 and not s.stateful else None

    def session(self, case: CaseVolumes, tracer: str | None = None, source=None, checkpoints=None,
                tta_axes=None) -> InteractiveSession:
        """A session on `case` with this run's settings; `checkpoints`/`tta_axes` default to the plan's
        (time budget) or the --tta-axes."""
        s, p = self.settings, self.predictor
        if checkpoints is None and tta_axes is None:
            if self.plan is not None:
                checkpoints, tta_axes = list(p.checkpoints)[: self.plan.n_models], self.plan.tta_axes
            elif s.tta_axes:
                tta_axes = tuple(s.tta_axes)
        return InteractiveSession(p, case, mode=self.mode, postprocess=s.postprocess, tracer=tracer,
                                  click_policy=s.click_policy, budget=s.budget, tile_cache_mb=s.tile_cache_mb,
                                  checkpoints=checkpoints, tta_axes=tta_axes, source=source)

    def _planned(self, case: CaseVolumes, clicks: Clicks, tracer: str | None, source) -> InteractiveSession | None:
        """Time one pass of the first checkpoint on the first step and choose the plan; returns that
        session when the plan is that single checkpoint (its prediction is kept), else None."""
        first = self.session(case, tracer, source, checkpoints=list(self.predictor.checkpoints)[:1], tta_axes=())
        first.set_clicks(clicks)
        t0 = self.clock()
        first.predict()
        seconds = self.clock() - t0
        self.seconds_per_pass = seconds
        n = len(self.predictor.checkpoints)
        self.plan = plan_budget(seconds, float(self.settings.time_budget_s), n, self._n_predictions(),
                                self.settings.budget_axes)
        msg = (f"time budget {self.settings.time_budget_s:g} s per case: {seconds:.2f} s per pass -> "
               f"{self.plan.n_models}/{n} checkpoint(s), mirror axes {list(self.plan.tta_axes)} "
               f"(estimated {self.plan.estimated_s:.1f} s)")
        (log.info if self.plan.fits else log.warning)(msg + ("" if self.plan.fits else ": does not fit, using the minimum"))
        return first if (self.plan.n_models, self.plan.tta_axes) == (1, ()) else None

    def case_session(self, case: CaseVolumes, clicks: Clicks, steps: Sequence[int | None], tracer: str | None,
                     source=None) -> InteractiveSession:
        """The session a case runs on (planning the time budget on the first case's first step)."""
        if self.settings.time_budget_s is not None and supports_subsets(self.predictor) and self.plan is None:
            first = self._planned(case, official_clicks(clicks)(steps[0], None), tracer, source)
            if first is not None:
                return first
        return self.session(case, tracer, source)

    def run_case(self, spec: CaseSpec, out: Path, bar=None) -> dict:
        """Predict every requested step of one case and write its files; returns its summary row."""
        t0 = time.perf_counter()
        dicom = load_dicom_case(*spec.dicom) if spec.dicom else None
        case = dicom.case if dicom else load_prediction_case(spec.ct, spec.pet)
        tracer_hint = spec.tracer or (dicom.tracer if dicom else None)
        clicks = read_clicks(spec.clicks, case.shape, policy=self.settings.click_policy) if spec.clicks else Clicks()
        tracer = self.case_tracer(tracer_hint, case)
        steps = [None] if self.settings.steps is None else list(self.settings.steps)
        session = self.case_session(case, clicks, steps, tracer, spec.clicks or spec.case_id)
        written = []
        for step, pred in run_steps(session, steps, official_clicks(clicks)):
            suffix = "" if step is None else f"_pred{step}"
            written.append(str(save_volume(out / f"{spec.case_id}{suffix}.nii.gz", pred.mask, case.affine)))
            if self.settings.dicom_seg:
                written.append(str(write_seg(out / f"{spec.case_id}{suffix}.seg.dcm", pred.mask, dicom.pet_datasets)))
            if self.settings.save_prob:
                psuffix = "_prob" if step is None else f"_prob{step}"
                save_volume(out / f"{spec.case_id}{psuffix}.nii.gz", pred.prob.astype(np.float32), case.affine)
            if bar is not None:
                bar.update(1)
        return {"case": spec.case_id, "tracer": tracer, "n_tumor_clicks": len(clicks.tumor),
                "n_background_clicks": len(clicks.background), "steps": steps, "files": written,
                "session": session.counters, "seconds": round(time.perf_counter() - t0, 3)}

    def run_settings(self) -> dict:
        """What produced this run's files: predictor, checkpoints, plan, TTA, post-processing, clicks."""
        weights = getattr(self.predictor, "algo_weights", None)
        ckpts = [str(c) for c in (getattr(self.predictor, "checkpoints", []) or [])]
        s = self.settings
        return {"predictor": getattr(self.predictor, "name", type(self.predictor).__name__),
                "predictor_by_step": self.predictor.spec if isinstance(self.predictor, StepRoutedPredictor) else None,
                "n_checkpoints": len(ckpts), "checkpoints": ckpts, "algo_weights": weights,
                "plan": None if self.plan is None else {**asdict(self.plan), "algo_weights": weights},
                "seconds_per_pass": self.seconds_per_pass, "tta_axes": list(s.tta_axes),
                "time_budget_s": s.time_budget_s, "postprocess": s.postprocess,
                "click_policy": ClickPolicy.parse(s.click_policy).value,
                "steps": None if s.steps is None else list(s.steps), "save_prob": s.save_prob,
                "incremental": self.mode or "exact", "tile_cache_mb": s.tile_cache_mb, "tracer_model": s.tracer_model,
                "petclick_version": petclick.__version__}

    def run(self, cases: Sequence[CaseSpec], out: str | Path, shards: Shards | None = None) -> dict:
        """Predict every case into `out` (under torchrun: this rank's share), merging each case into
        predict.json as it is written (all ranks under one run id); returns the run's summary (its
        settings and every rank's cases)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        shards = shards or Shards.from_env()
        record, run_id = out / "predict.json", shards.broadcast(new_run_id())
        check_record(record)
        mine = shards.share(list(cases))
        n_steps = 1 if self.settings.steps is None else len(self.settings.steps)
        rows = []
        with tqdm(total=len(mine) * n_steps, desc="predict", unit="step",
                  disable=not self.settings.progress or not shards.is_main) as bar:
            for spec in mine:
                bar.set_postfix_str(spec.case_id)
                rows.append(self.run_case(spec, out, bar))
                merge_cases(record, run_id, {**self.run_settings(), "ranks": shards.world_size}, rows[-1:])
        rows = shards.gather(rows, [c.case_id for c in cases], key="case")
        return {**self.run_settings(), "ranks": shards.world_size, "run": run_id, "cases": rows}
