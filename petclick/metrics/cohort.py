"""Running a cohort case by case: bad input skips the case (with its reason), never the cohort.

Used by `petclick evaluate` and `petclick interactive`. A case whose files raise InputError is
listed in `skipped` with the message (file and problem) and logged; the summary then states how
many cases were evaluated and skipped, so no mean is ever taken over a silently smaller set.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable

from petclick.core.errors import InputError
from petclick.io.datalist import entry_case_id, load_datalist, parse_case_id

log = logging.getLogger(__name__)


def run_cases(items: Iterable[tuple[str, Callable[[], list[dict]]]]) -> tuple[list[dict], list[dict]]:
    """Call each case's function; collect its rows, or skip it with the InputError's message."""
    rows: list[dict] = []
    skipped: list[dict] = []
    for case, fn in items:
        try:
            case_rows = fn()
        except InputError as exc:
            skipped.append({"case": case, "reason": str(exc)})
            log.warning("skipped %s: %s", case, exc)
            continue
        rows.extend(case_rows)
        final = case_rows[-1]
        log.info("%s: final Dice %.4g, FPV %.4g mL, FNV %.4g mL", case, final["dice"], final["fpv_ml"], final["fnv_ml"])
    return rows, skipped


def require_evaluated(summary: dict, source=None) -> None:
    """Raise InputError (exit 2) when no case could be evaluated: every case was skipped for bad
    input (the first reason is named; all are in summary.json), or there were none (`source`)."""
    if summary["n_evaluated"]:
        return
    if summary["skipped"]:
        first = summary["skipped"][0]
        raise InputError(None, f"no case could be evaluated ({len(summary['skipped'])} skipped; first: "
                               f"{first['case']}: {first['reason']})")
    raise InputError(source, "no case to evaluate")


def datalist_entries(path: str | Path | None) -> dict[str, dict]:
    """Every entry of a datalist (all splits) by case id; empty without a datalist."""
    if path is None:
        return {}
    data = load_datalist(path)
    out = {}
    for split, entries in data.items():
        if isinstance(entries, list):
            for e in entries:
                if isinstance(e, dict) and "image" in e:
                    out[entry_case_id(e)] = e
    return out


def tracer_of(case: str, entry: dict | None = None) -> str:
    """Tracer from the datalist entry, else from the case id (fdg_/psma_), else "unknown"."""
    if entry and entry.get("tracer"):
        return str(entry["tracer"]).lower()
    try:
        return parse_case_id(case).tracer
    except InputError:
        return "unknown"
