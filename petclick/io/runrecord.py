"""A folder's record of which run wrote which output (`predict.json`), safe for concurrent runs.

Several runs may write into one output folder (two `petclick predict` at once, or one after
another with other settings). Each merge holds a file lock (`<record>.lock`, filelock), reads the
record, replaces the rows of the cases it wrote, and writes it back atomically, so no run's cases
are lost and a kill leaves the previous complete record. The record holds:

    {"runs": {run_id: settings}, "cases": [row, ...],   # each row's "run" names the run that wrote it
     ...the settings of the run that merged last}        # (top-level keys kept for single-run readers)

Runs no case refers to any more are dropped from `runs`.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from filelock import FileLock

from petclick.core.atomic import atomic_write_text
from petclick.core.errors import InputError
from petclick.io.jsonfile import read_json

MAX_RECORD_BYTES = 256 << 20
LOCK_TIMEOUT_S = 600.0


def new_run_id() -> str:
    """A run id unique across runs, processes and machines: UTC time, host, process id, random token."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def _lock(path: Path) -> FileLock:
    return FileLock(str(path) + ".lock", timeout=LOCK_TIMEOUT_S)


def _read(path: Path) -> dict:
    if not path.exists():
        return {"runs": {}, "cases": []}
    data, _ = read_json(path, MAX_RECORD_BYTES, "run record")
    if not isinstance(data, dict) or not isinstance(data.get("cases", []), list) \
            or not isinstance(data.get("runs", {}), dict):
        raise InputError(path, "not a petclick run record (expected an object with a 'cases' list); "
                               "move it away or choose another output folder")
    return {**data, "runs": dict(data.get("runs", {})), "cases": list(data.get("cases", []))}


def check_record(path: str | Path) -> None:
    """Raise InputError now, before any work, when `path` exists but cannot be merged into."""
    path = Path(path)
    with _lock(path):
        _read(path)


def merge_cases(path: str | Path, run_id: str, settings: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict:
    """Merge this run's `rows` (each with a "case" key) and `settings` into the record at `path`,
    under its lock; returns the merged record."""
    path = Path(path)
    new = {str(r["case"]): {**r, "run": run_id} for r in rows}
    with _lock(path):
        record = _read(path)
        cases = [r for r in record["cases"] if str(r.get("case")) not in new] + list(new.values())
        cases.sort(key=lambda r: str(r.get("case")))
        runs = {**record["runs"], run_id: dict(settings)}
        used = {r.get("run") for r in cases}
        merged = {**record, **settings, "runs": {k: v for k, v in runs.items() if k in used}, "cases": cases}
        atomic_write_text(path, json.dumps(merged, indent=1, default=str) + "\n")
    return merged
