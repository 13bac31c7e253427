"""`petclick predict`: case discovery, robust input reading, time-budget planning and the prediction loop.

- cases.py: one CT/PET pair, an autoPET-layout folder, a datalist split or DICOM studies -> CaseSpec list
- inputs.py: read a case on the PET grid through petclick.io's checks (grids resampled, SUV repaired)
- budget.py: `plan_budget(seconds_per_pass, budget_s, n_models, ...)` -> checkpoints and mirror axes
- run.py: `Runner(predictor, PredictSettings).run(cases, out)` writes masks (and probabilities),
  each case on an interactive session, cases shared between torchrun ranks
"""

from petclick.workflows.predict.budget import Plan, plan_budget, tta_passes
from petclick.workflows.predict.cases import CaseSpec, datalist_cases, dicom_cases, folder_cases, single_case
from petclick.workflows.predict.inputs import load_prediction_case
from petclick.workflows.predict.run import ALL_STEPS, PredictSettings, Runner

__all__ = ["ALL_STEPS", "CaseSpec", "Plan", "PredictSettings", "Runner", "datalist_cases", "dicom_cases", "folder_cases",
           "load_prediction_case", "plan_budget", "single_case", "tta_passes"]
