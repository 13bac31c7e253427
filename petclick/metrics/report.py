"""The evaluation report: cases.csv (one row per case and step), case_summary.csv (one row per
case: AUCs and final values), summary.json and curves.png.

Both `petclick evaluate` and `petclick interactive` write it through `write_report`. NaN (Dice
and FNV of a case with empty ground truth; DMM and FNV under autopet-v) is written as `nan` in
the CSV and `null` in JSON. Under autopet-v cases.csv gets a `dmm` column next to `dice` and the
lesion counts behind it (`dmm_tp`, `dmm_fp`, `dmm_fn`); autopet-iv files keep their columns.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Mapping, Sequence

from petclick.core.atomic import atomic_open, atomic_write_text
from petclick.metrics.aggregate import case_keys, cohort_summary, per_step_stats
from petclick.metrics.editions import edition as get_edition
from petclick.metrics.plots import plot_curves

log = logging.getLogger(__name__)

CSV_COLUMNS = ("case", "tracer", "step", "dice", "fpv_ml", "fnv_ml", "gt_ml", "pred_ml", "n_gt_lesions",
               "n_pred_components", "n_fp_components", "n_fn_lesions", "n_tumor_clicks", "n_background_clicks",
               "tumor_clicks", "background_clicks", "source")
DMM_COLUMNS = ("dmm_tp", "dmm_fp", "dmm_fn")
FLOAT_COLUMNS = ("dice", "fpv_ml", "fnv_ml", "gt_ml", "pred_ml")
INT_COLUMNS = ("step", "n_gt_lesions", "n_pred_components", "n_fp_components", "n_fn_lesions",
               "n_tumor_clicks", "n_background_clicks")
OPTIONAL_FLOAT_COLUMNS = ("dmm",)
OPTIONAL_INT_COLUMNS = DMM_COLUMNS


def csv_columns(metrics: Sequence[str] = ("dice", "fpv", "fnv")) -> tuple[str, ...]:
    """cases.csv columns: with "dmm", `dmm` follows `dice` and the lesion counts follow n_fn_lesions."""
    if "dmm" not in metrics:
        return CSV_COLUMNS
    cols = list(CSV_COLUMNS)
    cols.insert(cols.index("dice") + 1, "dmm")
    at = cols.index("n_fn_lesions") + 1
    return tuple(cols[:at] + list(DMM_COLUMNS) + cols[at:])


def write_cases_csv(rows: Sequence[dict], path: str | Path, columns: Sequence[str] = CSV_COLUMNS) -> Path:
    """One line per case and step; click lists as JSON, missing values empty."""
    path = Path(path)
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            out = dict(r)
            for key in ("tumor_clicks", "background_clicks"):
                if key in out:
                    out[key] = json.dumps(out[key], separators=(",", ":"))
            writer.writerow(out)
    return path


def write_case_summary_csv(cases: Sequence[dict], path: str | Path, keys: Sequence[str] = case_keys()) -> Path:
    """One line per case: tracer, negative flag, AUC and final value of each metric."""
    path = Path(path)
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=("case", "tracer", "negative", *keys), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(cases)
    return path


def read_cases_csv(path: str | Path) -> list[dict]:
    """Read cases.csv back with numbers as numbers (nan for undefined values)."""
    rows = []
    with Path(path).open(newline="") as fh:
        for r in csv.DictReader(fh):
            for key in FLOAT_COLUMNS:
                r[key] = float(r[key]) if r.get(key) not in (None, "") else math.nan
            for key in INT_COLUMNS + OPTIONAL_INT_COLUMNS:
                if r.get(key) not in (None, ""):
                    r[key] = int(r[key])
            for key in OPTIONAL_FLOAT_COLUMNS:
                if key in r:
                    r[key] = float(r[key]) if r[key] != "" else math.nan
            for key in ("tumor_clicks", "background_clicks"):
                if r.get(key):
                    r[key] = json.loads(r[key])
            rows.append(r)
    return rows


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_summary(summary: dict, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(_json_safe(summary), indent=1) + "\n")


def format_summary(summary: dict) -> str:
    """Console lines: counts (evaluated, skipped, negatives) and the cohort means/medians."""
    o = summary["overall"]
    undefined = "DMM/FNV" if "auc_dmm" in summary else "Dice/FNV"   # autopet-v scores Dice on empty cases
    lines = [f"evaluated {summary['n_evaluated']} of {summary['n_cases']} cases "
             f"({summary['n_skipped']} skipped, {o['n_negative']} with empty ground truth: {undefined} taken over "
             f"{o['n_cases'] - o['n_negative']})"]
    for s in summary["skipped"]:
        lines.append(f"  skipped {s['case']}: {s['reason']}")
    groups = {"all": o, **summary["per_tracer"]}
    keys = [k for k in o if k.endswith(("_auc", "_final"))]
    lines.append(f"{'group':<8}{'n':>4}" + "".join(f"{k:>12}" for k in keys))
    for name, g in groups.items():
        means = "".join(f"{_fmt(g[k]['mean']):>12}" for k in keys)
        lines.append(f"{name:<8}{g['n_cases']:>4}{means}   (mean)")
        medians = "".join(f"{_fmt(g[k]['median']):>12}" for k in keys)
        lines.append(f"{'':<8}{'':>4}{medians}   (median)")
    if "auc_dmm" in summary:
        a = summary["auc_dmm"]
        lines.append(f"AUC-DMM, mean over cases with lesions: {_fmt(a['mean_over_cases_with_lesions']['value'])} "
                     f"(n={a['mean_over_cases_with_lesions']['n']})")
        per = ", ".join(f"{t} {_fmt(v['auc'])}" for t, v in a["pooled_f1_per_tracer"].items())
        lines.append(f"AUC-DMM, F1 pooled per tracer: {per}; mean over tracers "
                     f"{_fmt(a['pooled_f1_mean_over_tracers']['value'])}")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def write_report(out: str | Path, rows: Sequence[dict], skipped: Sequence[dict] = (), meta: dict | None = None,
                 n_steps: int | None = None, protocol: str = "autopet-iv") -> dict:
    """Write cases.csv, case_summary.csv, summary.json and curves.png into `out`; return the summary.

    `protocol` names the edition (petclick.metrics.editions) whose metrics are reported;
    `n_steps` defaults to its step count.
    """
    ed = get_edition(protocol)
    n_steps = ed.n_steps if n_steps is None else n_steps
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(rows, key=lambda r: (r["case"], int(r["step"])))
    write_cases_csv(rows, out / "cases.csv", csv_columns(ed.metrics))
    summary = cohort_summary(rows, skipped, meta, n_steps, ed.metrics, ed.nan_policy)
    write_summary(summary, out / "summary.json")
    write_case_summary_csv(summary["cases"], out / "case_summary.csv", case_keys(ed.metrics))
    if summary["n_evaluated"]:
        series = {f"all (n={summary['n_evaluated']})": summary["per_step"]}
        if len(summary["per_tracer"]) > 1:
            for tracer in summary["per_tracer"]:
                series[tracer] = per_step_stats([r for r in rows if r.get("tracer") == tracer], n_steps, ed.metrics)
        plot_curves(out / "curves.png", series, title=str((meta or {}).get("predictor", "")), step_label=ed.step_label)
    return summary
