"""From per-step rows to per-case AUC/final values and cohort statistics.

AUC of each metric over the protocol's steps 0..N-1 by the trapezoid rule with unit spacing, not
normalised (autoPET IV: 11 steps, autoPET V: 6 by default); "final" is the last step. Cohort
means and medians skip NaN (Dice and FNV of autoPET IV cases with an empty ground truth, DMM
and FNV of autoPET V ones), and every statistic carries `n`, the number of cases it was taken
over. `metrics` selects the metric set (autoPET V adds "dmm"); `dmm_aggregations` gives the two
ways AUC-DMM is aggregated over a cohort.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

from petclick.metrics.detection import f1_score

METRICS = ("dice", "fpv", "fnv")
COLUMN = {"dice": "dice", "dmm": "dmm", "fpv": "fpv_ml", "fnv": "fnv_ml"}
N_STEPS = 11
NAN_POLICY = ("Dice and FNV are undefined (NaN) for cases whose ground truth is empty; means and "
              "medians exclude them, and `n` gives how many cases each statistic was taken over.")


def case_keys(metrics: Sequence[str] = METRICS) -> tuple[str, ...]:
    """Per-case summary keys: <metric>_auc for every metric, then <metric>_final."""
    return tuple(f"{m}_{kind}" for kind in ("auc", "final") for m in metrics)


CASE_KEYS = case_keys(METRICS)


def auc_trapezoid(values: Sequence[float]) -> float:
    """Area under a per-step curve, trapezoid rule with unit spacing; NaN if any value is NaN."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        raise ValueError("an AUC needs at least two steps")
    return float(v.sum() - 0.5 * (v[0] + v[-1]))


def case_summary(rows: Sequence[dict], n_steps: int = N_STEPS, metrics: Sequence[str] = METRICS) -> dict:
    """AUC and final value of each metric (Dice, FPV, FNV by default) for one case's rows (steps 0..n_steps-1)."""
    by_step = {int(r["step"]): r for r in rows}
    if sorted(by_step) != list(range(n_steps)):
        raise ValueError(f"case {rows[0].get('case')!r} has steps {sorted(by_step)}, expected 0..{n_steps - 1}")
    first = by_step[0]
    out = {"case": first["case"], "tracer": first.get("tracer", "unknown"),
           "negative": bool(first.get("gt_ml", np.nan) == 0 or np.isnan(first["dice"]))}
    for m in metrics:
        curve = [by_step[k][COLUMN[m]] for k in range(n_steps)]
        out[f"{m}_auc"] = auc_trapezoid(curve)
        out[f"{m}_final"] = float(curve[-1])
    return out


def _stats(values: Iterable[float]) -> dict:
    v = np.asarray(list(values), dtype=float)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"mean": None, "median": None, "q25": None, "q75": None, "n": 0}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {"mean": float(v.mean()), "median": float(med), "q25": float(q25), "q75": float(q75), "n": int(v.size)}


def group_stats(cases: Sequence[dict], metrics: Sequence[str] = METRICS) -> dict:
    """Mean/median/quartiles (NaN excluded, with n) of every AUC and final value over `cases`."""
    out = {"n_cases": len(cases), "n_negative": sum(bool(c["negative"]) for c in cases)}
    for key in case_keys(metrics):
        out[key] = _stats(c[key] for c in cases)
    return out


def per_step_stats(rows: Sequence[dict], n_steps: int = N_STEPS, metrics: Sequence[str] = METRICS) -> dict:
    """For each metric, lists over steps of mean, median, q25, q75 and n (NaN excluded)."""
    by_step: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_step[int(r["step"])].append(r)
    out = {}
    for m in metrics:
        stats = [_stats(r[COLUMN[m]] for r in by_step.get(k, [])) for k in range(n_steps)]
        out[m] = {key: [s[key] for s in stats] for key in ("mean", "median", "q25", "q75", "n")}
    return out


def cohort_summary(rows: Sequence[dict], skipped: Sequence[dict] = (), meta: dict | None = None,
                   n_steps: int = N_STEPS, metrics: Sequence[str] = METRICS, nan_policy: str = NAN_POLICY) -> dict:
    """The summary.json content: counts, skipped cases, overall and per-tracer statistics, per-step curves.

    With "dmm" among the metrics it also holds `auc_dmm`, both cohort aggregations of AUC-DMM.
    """
    by_case: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_case[r["case"]].append(r)
    cases = [case_summary(rs, n_steps, metrics) for rs in by_case.values()]
    tracers = sorted({c["tracer"] for c in cases})
    summary = dict(meta or {})
    summary.update({
        "n_cases": len(cases) + len(skipped),
        "n_evaluated": len(cases),
        "n_skipped": len(skipped),
        "skipped": [dict(s) for s in skipped],
        "nan_policy": nan_policy,
        "overall": group_stats(cases, metrics),
        "per_tracer": {t: group_stats([c for c in cases if c["tracer"] == t], metrics) for t in tracers},
        "per_step": per_step_stats(rows, n_steps, metrics),
    })
    if "dmm" in metrics:
        summary["auc_dmm"] = dmm_aggregations(rows, n_steps)
    summary["cases"] = cases
    return summary


def _pooled_f1_curve(rows: Sequence[dict], n_steps: int) -> list[float]:
    """Per step, F1 of the TP/FP/FN lesion counts summed over the rows' cases."""
    totals = np.zeros((n_steps, 3), np.int64)
    for r in rows:
        totals[int(r["step"])] += (int(r["dmm_tp"]), int(r["dmm_fp"]), int(r["dmm_fn"]))
    return [f1_score(*map(int, t)) for t in totals]


def _none_if_nan(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def dmm_aggregations(rows: Sequence[dict], n_steps: int) -> dict:
    """AUC-DMM over a cohort both ways it is aggregated, each labelled with how it is computed.

    - mean_over_cases_with_lesions: each case's AUC of its own DMM curve (NaN for a lesion-free
      case), averaged over the cases with lesions (what participants report; the official loop
      writes these per-case AUCs to metric_scores_AUC.json).
    - pooled_f1_per_tracer: per tracer and step, F1 of the lesion counts summed over all its
      cases (lesion-free ones add their false positives), then the AUC of that curve (the
      organisers' MetricEvaluator.aggregate pools TP/FP/FN this way, per dataset);
      pooled_f1_mean_over_tracers averages those AUCs, pooled_f1_all_cases pools every case.
    """
    by_case: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_case[r["case"]].append(r)
    case_aucs = []
    for rs in by_case.values():
        curve = {int(r["step"]): r["dmm"] for r in rs}
        case_aucs.append(auc_trapezoid([curve[k] for k in range(n_steps)]))
    per_tracer = {}
    for tracer in sorted({r.get("tracer", "unknown") for r in rows}):
        trs = [r for r in rows if r.get("tracer", "unknown") == tracer]
        curve = _pooled_f1_curve(trs, n_steps)
        per_tracer[tracer] = {"auc": _none_if_nan(auc_trapezoid(curve)), "f1_per_step": [_none_if_nan(v) for v in curve],
                              "n_cases": len({r["case"] for r in trs})}
    tracer_aucs = [t["auc"] for t in per_tracer.values() if t["auc"] is not None]
    all_curve = _pooled_f1_curve(rows, n_steps) if rows else []
    valid = [v for v in case_aucs if np.isfinite(v)]
    return {
        "mean_over_cases_with_lesions": {
            "value": float(np.mean(valid)) if valid else None, "n": len(valid),
            "how": "mean over cases with lesions of each case's AUC-DMM (trapezoid over steps, not normalised)"},
        "pooled_f1_per_tracer": per_tracer,
        "pooled_f1_mean_over_tracers": {
            "value": float(np.mean(tracer_aucs)) if tracer_aucs else None, "n": len(tracer_aucs),
            "how": "per tracer, F1 of TP/FP/FN summed over all its cases at each step, AUC of that curve; "
                   "mean over tracers"},
        "pooled_f1_all_cases": {
            "value": _none_if_nan(auc_trapezoid(all_curve)) if rows else None,
            "f1_per_step": [_none_if_nan(v) for v in all_curve],
            "how": "F1 of TP/FP/FN summed over every case at each step, AUC of that curve"},
    }
