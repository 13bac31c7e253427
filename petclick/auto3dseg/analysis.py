"""PET statistics for bundle configuration (MONAI 1.6.1's DataAnalyzer analyses only `image` (CT)
and `label`; `extra_modalities` is ignored).

Per case (on a sample of the training cases): SUV percentiles inside the body (CT > -500 HU) and
inside the lesions; summarised as medians over cases. Written next to MONAI's datastats.yaml as
`datastats_pet.yaml` and reused by every fold's fill_template_config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from petclick.io.datalist import load_datalist, resolve_entry
from petclick.io.images import load_volume

log = logging.getLogger(__name__)
BODY_HU = -500.0
PERCENTILES = (0.5, 50.0, 99.5)


def _case_stats(entry: dict) -> dict[str, Any]:
    pet = load_volume(entry["pet"]).array
    ct = load_volume(entry["image"]).array
    body = pet[ct > BODY_HU]
    out: dict[str, Any] = {"max": float(pet.max()),
                           "body": [float(v) for v in np.percentile(body, PERCENTILES)] if body.size else None}
    if entry.get("label"):
        lab = load_volume(entry["label"], dtype=np.uint8).array
        les = pet[lab > 0]
        out["lesion"] = [float(v) for v in np.percentile(les, PERCENTILES)] if les.size else None
    return out


def pet_statistics(datalist: str | Path, dataroot: str | Path, max_cases: int = 50, seed: int = 0) -> dict[str, Any]:
    """Median over (up to `max_cases` sampled) training cases of SUV percentiles (0.5, 50, 99.5)
    in the body and in lesions, and of the per-case SUV maximum."""
    entries = load_datalist(datalist).get("training", [])
    rng = np.random.default_rng(seed)
    idx = sorted(rng.permutation(len(entries))[:max_cases].tolist()) if len(entries) > max_cases else range(len(entries))
    stats = [_case_stats(resolve_entry(entries[i], dataroot)) for i in idx]

    def median(key: str):
        vals = [s[key] for s in stats if s.get(key) is not None]
        return [round(float(v), 4) for v in np.median(np.asarray(vals), axis=0)] if vals else None

    maxima = [s["max"] for s in stats]
    return {"n_cases": len(stats), "percentiles": list(PERCENTILES), "body_suv": median("body"),
            "lesion_suv": median("lesion"), "max_suv_median": round(float(np.median(maxima)), 4) if maxima else None,
            "n_cases_with_lesions": sum(1 for s in stats if s.get("lesion") is not None)}


def cached_pet_statistics(path: str | Path, datalist: str | Path, dataroot: str | Path, **kw: Any) -> dict[str, Any]:
    """pet_statistics, read from `path` when it exists (so folds share one analysis), else computed and written."""
    from petclick.core.yamlio import read_yaml, write_yaml

    path = Path(path)
    if path.is_file():
        return read_yaml(path)
    stats = pet_statistics(datalist, dataroot, **kw)
    write_yaml(path, stats, header="# PET (SUV) statistics by petclick.auto3dseg.analysis (MONAI's DataAnalyzer skips extra modalities)")
    log.info("PET statistics written to %s", path)
    return stats
