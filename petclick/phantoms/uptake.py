"""Per-tracer uptake (SUV) and CT attenuation (HU) tables, sampled once per case.

Ranges are the ones docs/phantoms.md lists per tracer. Values it does not fix (fat, lung, bone marrow,
bowel and glands under FDG, PSMA soft tissue) use typical clinical figures. Each case draws one value per
tissue, so organ uptake varies between patients (myocardium 1-10 under FDG, bladder filling).
"""

from __future__ import annotations

import numpy as np

from petclick.phantoms.labels import NUM_LABELS, ORGAN_LABELS

TRACERS = ("fdg", "psma")

# (low, high, log-uniform?) per tissue; air (label 0) is always 0 SUV / -1000 HU.
SUV_RANGES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "fdg": {
        "soft_tissue": (0.5, 1.0, False), "fat": (0.25, 0.45, False), "lung": (0.3, 0.5, False),
        "airway": (0.02, 0.08, False), "skull": (0.5, 0.9, False), "spine": (0.8, 1.4, False),
        "pelvis_bone": (0.8, 1.4, False), "femur": (0.6, 1.1, False), "ribs": (0.6, 1.0, False),
        "brain": (6.0, 9.0, False), "salivary_glands": (1.2, 2.5, False), "myocardium": (1.0, 10.0, True),
        "blood_pool": (1.3, 1.7, False), "liver": (2.0, 2.5, False), "spleen": (1.6, 2.0, False),
        "kidneys": (2.0, 4.0, False), "bladder": (5.0, 40.0, True), "small_bowel": (1.0, 2.5, False),
    },
    "psma": {
        "soft_tissue": (0.4, 0.8, False), "fat": (0.15, 0.3, False), "lung": (0.15, 0.3, False),
        "airway": (0.02, 0.06, False), "skull": (0.3, 0.6, False), "spine": (0.6, 1.2, False),
        "pelvis_bone": (0.6, 1.2, False), "femur": (0.4, 0.9, False), "ribs": (0.4, 0.8, False),
        "brain": (0.2, 0.4, False), "salivary_glands": (10.0, 20.0, False), "myocardium": (1.0, 2.5, False),
        "blood_pool": (1.0, 1.6, False), "liver": (4.0, 6.0, False), "spleen": (3.0, 5.0, False),
        "kidneys": (15.0, 40.0, True), "bladder": (5.0, 30.0, True), "small_bowel": (3.0, 6.0, False),
    },
}

HU_RANGES: dict[str, tuple[float, float]] = {
    "soft_tissue": (35, 55), "fat": (-115, -85), "lung": (-870, -820), "airway": (-990, -960),
    "skull": (900, 1200), "spine": (250, 400), "pelvis_bone": (250, 400), "femur": (250, 400),
    "ribs": (350, 550), "brain": (28, 38), "salivary_glands": (-10, 20), "myocardium": (40, 50),
    "blood_pool": (35, 45), "liver": (50, 65), "spleen": (40, 50), "kidneys": (28, 38),
    "bladder": (0, 15), "small_bowel": (15, 40),
}
CORTEX_HU = (900.0, 1200.0)   # cortical shell of vertebrae, pelvis and femurs (marrow values above)
CT_NOISE_HU = (10.0, 25.0)
AIR_HU = -1000.0

# Activated bone marrow (FDG: after chemotherapy or growth factors): the probability per case and the
# factor on the marrow-bearing bones' uptake, so that bone lesions sit in a hot background.
MARROW_ACTIVATION = {"p": 0.2, "factor": (1.6, 2.4), "bones": ("spine", "pelvis_bone", "femur")}


def _draw(rng: np.random.Generator, lo: float, hi: float, log: bool) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if log else float(rng.uniform(lo, hi))


def sample_tables(rng: np.random.Generator, tracer: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(SUV lookup, HU lookup, values by tissue name) for one case; index the lookups with the organ map."""
    if tracer not in SUV_RANGES:
        raise ValueError(f"unknown tracer {tracer!r}; expected one of {TRACERS}")
    suv = np.zeros(NUM_LABELS, dtype=np.float32)
    hu = np.full(NUM_LABELS, AIR_HU, dtype=np.float32)
    values: dict[str, dict[str, float]] = {"suv": {}, "hu": {}}
    for name, label in ORGAN_LABELS.items():
        suv[label] = _draw(rng, *SUV_RANGES[tracer][name])
        hu[label] = _draw(rng, *HU_RANGES[name], False)
        values["suv"][name] = round(float(suv[label]), 4)
        values["hu"][name] = round(float(hu[label]), 2)
    values["cortex_hu"] = round(_draw(rng, *CORTEX_HU, False), 2)
    values["ct_noise_hu"] = round(_draw(rng, *CT_NOISE_HU, False), 3)
    activated = tracer == "fdg" and rng.uniform() < MARROW_ACTIVATION["p"]
    factor = _draw(rng, *MARROW_ACTIVATION["factor"], False)
    values["marrow_activated"] = bool(activated)
    if activated:
        for name in MARROW_ACTIVATION["bones"]:
            suv[ORGAN_LABELS[name]] *= np.float32(factor)
            values["suv"][name] = round(float(suv[ORGAN_LABELS[name]]), 4)
    return suv, hu, values
