"""From per-step rows to per-case AUC/final values and cohort statistics.

AUC of each metric over the protocol's steps 0..10 by the trapezoid rule with unit spacing;
"final" is the last step (10). Cohort means and medians skip NaN (Dice and FNV of cases with an
empty ground truth), and every statistic carries `n`, the number of cases it was taken over.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Sequence

import numpy as np

METRICS = ("dice", "fpv", "fnv")
COLUMN = {"dice": "dice", "fpv": "fpv_ml", "fnv": "fnv_ml"}
N_STEPS = 11
CASE_KEYS = tuple(f"{m}_{kind}" for kind in ("auc", "final") for m in METRICS)
NAN_POLICY = ("Dice and FNV are undefined (NaN) for cases whose ground truth is empty; means and "
              "medians exclude them, and `n` gives how many cases each statistic was taken over.")


def auc_trapezoid(values: Sequence[float]) -> float:
    """Area under a per-step curve, trapezoid rule with unit spacing; NaN if any value is NaN."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        raise ValueError("an AUC needs at least two steps")
    return float(v.sum() - 0.5 * (v[0] + v[-1]))


def case_summary(rows: Sequence[dict], n_steps: int = N_STEPS) -> dict:
    """AUC and final value of Dice, FPV, FNV for one case's rows (one per step 0..n_steps-1)."""
    by_step = {int(r["step"]): r for r in rows}
    if sorted(by_step) != list(range(n_steps)):
        raise ValueError(f"case {rows[0].get('case')!r} has steps {sorted(by_step)}, expected 0..{n_steps - 1}")
    first = by_step[0]
    out = {"case": first["case"], "tracer": first.get("tracer", "unknown"),
           "negative": bool(first.get("gt_ml", np.nan) == 0 or np.isnan(first["dice"]))}
    for m in METRICS:
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


def group_stats(cases: Sequence[dict]) -> dict:
    """Mean/median/quartiles (NaN excluded, with n) of every AUC and final value over `cases`."""
    out = {"n_cases": len(cases), "n_negative": sum(bool(c["negative"]) for c in cases)}
    for key in CASE_KEYS:
        out[key] = _stats(c[key] for c in cases)
    return out


def per_step_stats(rows: Sequence[dict], n_steps: int = N_STEPS) -> dict:
    """For each metric, lists over steps of mean, median, q25, q75 and n (NaN excluded)."""
    by_step: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_step[int(r["step"])].append(r)
    out = {}
    for m in METRICS:
        stats = [_stats(r[COLUMN[m]] for r in by_step.get(k, [])) for k in range(n_steps)]
        out[m] = {key: [s[key] for s in stats] for key in ("mean", "median", "q25", "q75", "n")}
    return out


def cohort_summary(rows: Sequence[dict], skipped: Sequence[dict] = (), meta: dict | None = None,
                   n_steps: int = N_STEPS) -> dict:
    """The summary.json content: counts, skipped cases, overall and per-tracer statistics, per-step curves."""
    by_case: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_case[r["case"]].append(r)
    cases = [case_summary(rs, n_steps) for rs in by_case.values()]
    tracers = sorted({c["tracer"] for c in cases})
    summary = dict(meta or {})
    summary.update({
        "n_cases": len(cases) + len(skipped),
        "n_evaluated": len(cases),
        "n_skipped": len(skipped),
        "skipped": [dict(s) for s in skipped],
        "nan_policy": NAN_POLICY,
        "overall": group_stats(cases),
        "per_tracer": {t: group_stats([c for c in cases if c["tracer"] == t]) for t in tracers},
        "per_step": per_step_stats(rows, n_steps),
        "cases": cases,
    })
    return summary
